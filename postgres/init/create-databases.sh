#!/usr/bin/env bash
# Create the litellm, n8n and langfuse databases, each owned by its own role
# that only it can connect to. Idempotent: run on every `up` by the
# postgres-init job, and by local mode against a local Postgres.
# Connection: the standard PG* variables (PGHOST, PGPORT, PGUSER, PGPASSWORD).
set -euo pipefail

for db in litellm n8n langfuse; do
  var="$(echo "$db" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  password="${!var:?$var is not set}"
  psql -v ON_ERROR_STOP=1 -X -q -d postgres -v db="$db" -v pw="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'db')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'db') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'db', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'db')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SELECT format('GRANT ALL ON DATABASE %I TO %I', :'db', :'db') \gexec
SQL
  echo "database $db ready (owner $db)"
done
