"""The key guard: which encryption keys the stack's data was written with, never the keys themselves.

n8n encrypts its stored credentials with N8N_ENCRYPTION_KEY, LiteLLM its
stored provider keys with LITELLM_SALT_KEY, Langfuse its LLM connections with
LANGFUSE_ENCRYPTION_KEY. Data restored under a fresh key cannot be decrypted,
and services started that way overwrite or lose it. So every backup records a
fingerprint of each key (scrypt with a random salt kept beside it: the
manifest is stored in clear, and an unsalted fast hash would let anyone who
reads the bucket test guesses of a weak key by the billion) in the
``vps.env`` entry of its manifest and in a small
table, ``ops_key_guard``, in the ``postgres`` database, which travels inside
every Postgres dump. ``ops recover`` compares those, and n8n's own settings
file in the n8n-data volume, with the vps.env it is about to start with, and
refuses naming the key that differs.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import re
import subprocess

from ops.config import Settings
from ops.errors import ConfigError

KEYS = ("N8N_ENCRYPTION_KEY", "LITELLM_SALT_KEY", "LANGFUSE_ENCRYPTION_KEY")
LABEL = b"aistack key guard v1"
TABLE = "ops_key_guard"  # in the postgres database
CREATE_SQL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE}"
    " (name text PRIMARY KEY, fingerprint text NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())"
)


class KeyMismatch(ConfigError):
    """The data was encrypted with another key than the one vps.env holds."""


SCHEME = "s1"  # s1.<salt hex>.<scrypt hex>; 16 bare hex characters: the unsalted HMAC of backups before it
FINGERPRINT = re.compile(r"[0-9a-f]{16}|s1\.[0-9a-f]{16}\.[0-9a-f]{32}")


SALT = os.urandom(8)  # this process's: fingerprints() computes each key once, a new salt in each backup run


@functools.lru_cache(maxsize=64)
def _scrypt(value: str, salt: bytes) -> str:
    # ~16 MiB and tens of milliseconds a guess, where a bare HMAC takes well under a microsecond
    return hashlib.scrypt(value.encode(), salt=LABEL + salt, n=2**14, r=8, p=1, dklen=16).hex()


def fingerprint(value: str, salt: bytes | None = None) -> str:
    """Given a key's value (and a salt, random when None), return its fingerprint: s1.<salt>.<scrypt digest>."""
    salt = os.urandom(8) if salt is None else salt
    return f"{SCHEME}.{salt.hex()}.{_scrypt(value, salt)}"


def matches(recorded: str, value: str) -> bool:
    """Given a recorded fingerprint and a key's value, return whether the fingerprint is of that value."""
    if not FINGERPRINT.fullmatch(recorded):
        return False
    if recorded.startswith(f"{SCHEME}."):
        return hmac.compare_digest(recorded, fingerprint(value, bytes.fromhex(recorded.split(".")[1])))
    return hmac.compare_digest(recorded, hmac.new(LABEL, value.encode(), hashlib.sha256).hexdigest()[:16])


def fingerprints(env: dict[str, str]) -> dict[str, str]:
    """Given vps.env's variables, return {key name: fingerprint} of each guarded key that is set."""
    return {name: fingerprint(env[name], SALT) for name in KEYS if env.get(name, "").strip()}


def differing(recorded: dict[str, str], env: dict[str, str]) -> list[str]:
    """Given recorded fingerprints and vps.env's variables, return the names of the keys whose value differs.

    A key recorded but missing from env differs too; a key env has that nothing recorded does not.
    """
    return [
        name for name in KEYS if name in recorded and not (env.get(name, "").strip() and matches(str(recorded[name]), env[name]))
    ]


def check(recorded: dict[str, str], env: dict[str, str], where: str) -> None:
    """Raise KeyMismatch naming each guarded key of env that differs from what where recorded."""
    names = differing(recorded, env)
    if names:
        raise KeyMismatch(
            f"{', '.join(names)} in vps.env {'is not the key' if len(names) == 1 else 'are not the keys'} the data in {where}"
            " was encrypted with: starting the services would leave it undecryptable; put the old vps.env back "
            "(ops recover restores it from the backup when there is none)"
        )


def record_sql(values: dict[str, str], fingerprinted: bool = False) -> str:
    """Given vps.env's variables (or, fingerprinted, their fingerprints), return the SQL recording them in the table."""
    prints = values if fingerprinted else fingerprints(values)
    # names and fingerprints are ours (KEYS, hex digits and dots): nothing from outside reaches the SQL text
    rows = ", ".join(f"('{name}', '{value}')" for name, value in prints.items() if name in KEYS and FINGERPRINT.fullmatch(value))
    upsert = (
        f"INSERT INTO {TABLE} (name, fingerprint) VALUES {rows} "
        "ON CONFLICT (name) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, recorded_at = now()"
    )  # a new salt each time: the row is rewritten at each backup, its value still names the same key
    return f"{CREATE_SQL};\n{upsert};\n" if rows else f"{CREATE_SQL};\n"


EXISTS_SQL = f"SELECT to_regclass('public.{TABLE}') IS NOT NULL"  # psql --csv prints t or f
READ_SQL = f"SELECT name, fingerprint FROM {TABLE} ORDER BY name"


def n8n_settings_key(text: str) -> str:
    """Given n8n's settings file (``config`` in its user folder), return the encryptionKey it holds, or "".

    n8n writes {"encryptionKey": "..."} there at first start and refuses to start when
    N8N_ENCRYPTION_KEY differs from it (source: n8n-io/n8n packages/core/src/instance-settings/
    instance-settings.ts, "Mismatching encryption keys").
    """
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    key = data.get("encryptionKey", "") if isinstance(data, dict) else ""
    return key if isinstance(key, str) else ""


DATA_VOLUMES = ("n8n-data", "postgres-data")  # compose volumes whose data the guarded keys encrypt


def refuse_fresh_keys(settings: Settings, docker: tuple[str, ...] = ("docker",)) -> None:
    """Given Settings before `ops secrets init` writes fresh keys, raise KeyMismatch if this engine already holds
    the compose project's encrypted data (its n8n-data or postgres-data volume), naming the keys and volumes.

    Says nothing when Docker cannot be asked (a host not prepared yet has no data either).
    """
    project = settings.effective_env.get("COMPOSE_PROJECT_NAME") or settings.project_dir.name
    argv = [*docker, "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return
    found = [v for v in proc.stdout.split() if v.removeprefix(f"{project}_") in DATA_VOLUMES] if proc.returncode == 0 else []
    if found:
        raise KeyMismatch(
            f"{', '.join(KEYS)}: this host already holds the stack's data (volumes {', '.join(found)}), encrypted with"
            " the old keys; fresh ones would not decrypt it: restore the old vps.env (`ops recover` does, from the"
            " backups), or remove the volumes (docker compose down --volumes) to start afresh"
        )
