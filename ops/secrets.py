"""Generated secrets: what each one is, how it is made, and how a weak one is recognised.

``init_secrets`` turns vps.env.example into vps.env (mode 600) with every
secret generated; ``secret_problems`` is what ``ops doctor`` and every
command that touches the stack use to refuse placeholder or weak secrets.
"""

from __future__ import annotations

import os
import re
import secrets
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import bcrypt

from ops.envfile import format_env_value, parse_env_text, replace_private_file, write_private_file
from ops.errors import ConfigError


def _hex(nbytes: int) -> Callable[[], str]:
    return lambda: secrets.token_hex(nbytes)


def _prefixed(prefix: str) -> Callable[[], str]:
    return lambda: prefix + secrets.token_hex(24)


# The prefixes of the Langfuse project keys ops generates (public, secret): Langfuse accepts any string
# for LANGFUSE_INIT_PROJECT_*_KEY (source: langfuse/langfuse web/src/env.mjs, z.string()).
SELF_HOSTED_LANGFUSE_KEY = ("pk-lf-selfhosted-", "sk-lf-selfhosted-")

# Every secret ops generates. Minimum length is what the doctor accepts for a
# value a user set by hand.
GENERATED: dict[str, Callable[[], str]] = {
    "POSTGRES_PASSWORD": _hex(24),
    "LITELLM_DB_PASSWORD": _hex(24),
    "N8N_DB_PASSWORD": _hex(24),
    "LANGFUSE_DB_PASSWORD": _hex(24),
    "REDIS_PASSWORD": _hex(24),
    "LITELLM_MASTER_KEY": _prefixed("sk-"),  # LiteLLM requires the sk- prefix
    "LITELLM_SALT_KEY": _prefixed("sk-"),
    "N8N_ENCRYPTION_KEY": _hex(32),
    "N8N_WEBHOOK_SECRET": _hex(24),  # the routing webhook's header key (slice 4 puts it into n8n)
    "LANGFUSE_SALT": _hex(32),
    "LANGFUSE_ENCRYPTION_KEY": _hex(32),  # Langfuse wants exactly 64 hex characters
    "NEXTAUTH_SECRET": _hex(32),
    "CLICKHOUSE_PASSWORD": _hex(24),
    "QDRANT_API_KEY": _hex(24),
    # For a Langfuse on this VM (profile langfuse), which creates its project with them. Marked, so the
    # doctor can tell them from a Langfuse Cloud project's keys, which have the same pk-lf-<uuid> form.
    "LANGFUSE_PUBLIC_KEY": lambda: f"{SELF_HOSTED_LANGFUSE_KEY[0]}{uuid.uuid4()}",
    "LANGFUSE_SECRET_KEY": lambda: f"{SELF_HOSTED_LANGFUSE_KEY[1]}{uuid.uuid4()}",
    "LANGFUSE_INIT_USER_PASSWORD": lambda: secrets.token_urlsafe(18),
    "BASIC_AUTH_PASSWORD": lambda: secrets.token_urlsafe(18),
}
# Derived from another secret after generation.
DERIVED: dict[str, tuple[str, Callable[[str], str]]] = {
    "BASIC_AUTH_HASH": ("BASIC_AUTH_PASSWORD", lambda pw: bcrypt.hashpw(pw.encode(), bcrypt.gensalt(12)).decode()),
}
MIN_LENGTH = 20

_PLACEHOLDER = re.compile(
    r"^$|change[-_ ]?me|changeit|replace[-_ ]?(me|this)|placeholder|your[-_]|(^|[-_.@])your|example|^x+$"
    r"|(^|[-_])x{4,}|^todo|^secret$|^password$|^test$|\.\.\.|<.*>|[-_ ]here$",
    re.IGNORECASE,
)


def is_placeholder(value: str) -> bool:
    """Given a value from vps.env, return True if it is empty or looks like a template placeholder."""
    return bool(_PLACEHOLDER.search(value.strip()))


def secret_problems(env: dict[str, str]) -> list[str]:
    """Given vps.env's variables, return one message per missing, placeholder or weak secret."""
    problems = []
    for name in [*GENERATED, *DERIVED]:
        value = env.get(name)
        if value is None:
            problems.append(f"{name} is missing; `ops secrets add-missing` generates it")
        elif is_placeholder(value):
            problems.append(f"{name} is a placeholder ({value!r}); run `ops secrets init` on a fresh vps.env")
        elif name in GENERATED and len(value) < MIN_LENGTH:
            problems.append(f"{name} is weak: {len(value)} characters, at least {MIN_LENGTH} needed")
    key = env.get("LANGFUSE_ENCRYPTION_KEY", "")
    if not is_placeholder(key) and not re.fullmatch(r"[0-9a-f]{64}", key):
        problems.append("LANGFUSE_ENCRYPTION_KEY must be 64 hex characters (openssl rand -hex 32)")
    for name in ("LITELLM_MASTER_KEY", "LITELLM_SALT_KEY"):
        if name in env and not is_placeholder(env[name]) and not env[name].startswith("sk-"):
            problems.append(f"{name} must start with 'sk-' (LiteLLM rejects other keys)")
    password, hashed = env.get("BASIC_AUTH_PASSWORD", ""), env.get("BASIC_AUTH_HASH", "")
    if password and hashed.startswith("$2") and not bcrypt.checkpw(password.encode(), hashed.encode()):
        problems.append("BASIC_AUTH_HASH does not match BASIC_AUTH_PASSWORD")
    return problems


# Names reserved for documentation (RFC 2606, RFC 6761) and private-use suffixes: a certificate for
# them never issues. And the template names of tutorials (yourdomain.com, my-domain.com, domain.tld).
_RESERVED_DOMAIN = re.compile(
    r"(^|\.)(example\.(com|net|org)|example|test|invalid|localhost|local|lan|internal|home\.arpa|tld)$"
    r"|(^|[.-])(your|my)[-_]?(own[-_]?)?(domain|site|company|server|host)\.|(^|\.)domain\.(com|net|org)$",
    re.IGNORECASE,
)
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY")


def placeholder_domain(value: str) -> bool:
    """Given a domain name, return whether it is empty or a reserved example name (example.com and the like)."""
    return not value.strip() or bool(_RESERVED_DOMAIN.search(value.strip().rstrip(".")))


def setting_problems(env: dict[str, str], profiles: tuple[str, ...]) -> list[str]:
    """Given vps.env's variables and the enabled profiles, return one message per setting still at its template value.

    The template's example.com names and address, no provider key, and no
    backup bucket: the stack would start, then fail at its first certificate,
    its first request or its first night.
    """
    problems = []
    # the Caddyfile serves LANGFUSE_DOMAIN whenever it is set, profile or not: Caddy would ask for its certificate
    served = "langfuse" in profiles or env.get("LANGFUSE_DOMAIN", "").strip()
    domains = ["N8N_DOMAIN", "LITELLM_DOMAIN", *(["LANGFUSE_DOMAIN"] if served else [])]
    for name in domains:
        value = env.get(name, "")
        if placeholder_domain(value):
            problems.append(f"{name} is a placeholder ({value!r}): set the public name Caddy gets a certificate for")
    if served and "langfuse" not in profiles and not placeholder_domain(env.get("LANGFUSE_DOMAIN", "")):
        problems.append(
            "LANGFUSE_DOMAIN is set but profile langfuse is off: Caddy would get a certificate for it and answer "
            "502 there; empty it (Langfuse Cloud needs no name here)"
        )
    email = env.get("ACME_EMAIL", "")
    if "@" not in email or placeholder_domain(email.rpartition("@")[2]):
        problems.append(f"ACME_EMAIL is a placeholder ({email!r}): Let's Encrypt and the Langfuse login need your address")
    keys = {name: env.get(name, "").strip() for name in PROVIDER_KEYS}
    for name, value in keys.items():
        if value and is_placeholder(value):
            problems.append(f"{name} is a placeholder ({value!r}): paste the provider's key or leave it empty")
    if not any(value and not is_placeholder(value) for value in keys.values()):
        problems.append(f"no provider key: set at least one of {', '.join(PROVIDER_KEYS)}")
    buckets = ["OPS_BACKUP_BUCKET", *(["LANGFUSE_GCS_BUCKET"] if "langfuse" in profiles else [])]
    for name in buckets:
        value = env.get(name, "").strip()
        if not value or value.startswith("my-project") or is_placeholder(value):
            what = "empty" if not value else f"a placeholder ({value!r})"
            problems.append(f"{name} is {what}: create the bucket (docs/RUNBOOK.md)")
    return problems


def _fresh(make: Callable[[], str]) -> str:
    # a random value may, rarely (about 1 in 10^6 for token_urlsafe), start with "todo" or hold "-xxxx":
    # doctor would then refuse the value init just wrote, so draw again
    while is_placeholder(value := make()):
        pass
    return value


def generate_secrets() -> dict[str, str]:
    """Return a fresh value for every generated and derived secret, none of which reads as a placeholder."""
    values = {name: _fresh(make) for name, make in GENERATED.items()}
    for name, (source, derive) in DERIVED.items():
        values[name] = derive(values[source])
    return values


def render_env(example_text: str, values: dict[str, str]) -> str:
    """Given vps.env.example's text and values, return it with those values filled in, comments kept."""
    known = parse_env_text(example_text, "vps.env.example")
    missing = sorted(set(values) - set(known))
    if missing:
        raise ConfigError(f"vps.env.example does not list {', '.join(missing)}")
    lines = []
    for line in example_text.splitlines():
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=", line)
        if match and match.group(1) in values:
            line = f"{match.group(1)}={format_env_value(values[match.group(1)])}"
        lines.append(line)
    return "\n".join(lines) + "\n"


# Plain `docker compose` in the project directory reads .env there (COMPOSE_FILE, COMPOSE_PROFILES,
# COMPOSE_PROJECT_NAME and the variables; source: docs.docker.com, compose envvars and "Interpolation"):
# .env is a link to vps.env, so both stay one file. COMPOSE_ENV_FILES would not do: compose reads it from
# the process environment only, not from .env (tried on Compose 2.40.3).
DOTENV = ".env"
PLAIN_COMPOSE = {"COMPOSE_FILE": "docker-compose.vps.yml"}


def link_dotenv(target: Path) -> bool:
    """Given vps.env, make .env beside it a relative link to it; return True if .env is that link afterwards.

    An .env that is something else (a file of the user's) is left as it is: False. Raise ConfigError if
    the link cannot be made.
    """
    dotenv = target.parent / DOTENV
    if dotenv.is_symlink() and os.readlink(dotenv) == target.name:
        return True
    if dotenv.exists() or dotenv.is_symlink():
        return False
    try:
        dotenv.symlink_to(target.name)
    except OSError as exc:
        raise ConfigError(f"cannot link {dotenv} to {target.name}: {exc.strerror}") from exc
    return True


def init_secrets(example: Path, target: Path, dry_run: bool = False) -> dict[str, str]:
    """Write target (vps.env, mode 600) from example with every secret generated, and link .env to it.

    Return the generated values. Raise ConfigError if target exists (it is
    never overwritten) or the example is unreadable or lacks a secret.
    """
    if target.exists():
        raise ConfigError(f"{target} already exists; refusing to overwrite it (move it away first)")
    try:
        example_text = example.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {example}: {exc.strerror}") from exc
    values = generate_secrets()
    text = render_env(example_text, values)
    if not dry_run:
        write_private_file(target, text)
        link_dotenv(target)
    return values


def add_missing_secrets(target: Path, dry_run: bool = False) -> list[str]:
    """Given an existing vps.env, append a generated value for each secret it lacks; return their names.

    For a vps.env written before a release added a secret (N8N_WEBHOOK_SECRET, say). A secret
    already there, even a placeholder, is left as it is: changing a live password or encryption key
    would lock services out of their data. A missing derived secret (BASIC_AUTH_HASH) is derived from
    its source, the existing one if there is one. The file is replaced atomically and stays mode 600.
    What plain `docker compose` needs is added too: COMPOSE_FILE when missing, and the .env link.
    Raise ConfigError if target does not exist or cannot be parsed.
    """
    if not target.exists():
        raise ConfigError(f"{target} does not exist; `ops secrets init` writes a new one")
    text = target.read_text(encoding="utf-8")
    env = parse_env_text(text, target.name)
    fresh = generate_secrets()
    sources_in_use = {source for name, (source, _) in DERIVED.items() if name in env}  # a hash made from a password
    added = {name: fresh[name] for name in GENERATED if name not in env and name not in sources_in_use}
    for name, (source, derive) in DERIVED.items():
        if name not in env:
            added[name] = derive(env.get(source) or added.get(source) or fresh[source])
    added.update({name: value for name, value in PLAIN_COMPOSE.items() if name not in env})
    if not dry_run:
        link_dotenv(target)
    if added and not dry_run:
        lines = [f"{name}={format_env_value(value)}" for name, value in added.items()]
        stamp = f"# added by `ops secrets add-missing` on {time.strftime('%Y-%m-%d')}"
        replace_private_file(target, text.rstrip("\n") + "\n\n" + stamp + "\n" + "\n".join(lines) + "\n")
    return list(added)


def scratch_project(example: Path, directory: Path) -> Path:
    """Given vps.env.example, make directory a project with it and a generated vps.env; return directory.

    For benchmarks that run ops as a separate process against local services.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vps.env.example").write_text(example.read_text())
    init_secrets(directory / "vps.env.example", directory / "vps.env")
    return directory
