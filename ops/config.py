"""One typed Settings object built from the project directory, vps.env and its example.

Everything below the CLI takes a Settings; nothing else reads environment
variables or guesses paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from ops.envfile import read_env_file
from ops.errors import ConfigError
from ops.secrets import secret_problems

COMPOSE_FILE = "docker-compose.vps.yml"
LITELLM_CONFIG = "litellm-config.yaml"
CADDYFILE = "Caddyfile"
ENV_FILE = "vps.env"
ENV_EXAMPLE = "vps.env.example"
ROUTING_RULES = "routing-rules.yaml"


@dataclass(frozen=True)
class Settings:
    """The project's files and variables, validated once."""

    project_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    example_env: dict[str, str] = field(default_factory=dict)
    env_file_present: bool = False

    @property
    def compose_file(self) -> Path:
        return self.project_dir / COMPOSE_FILE

    @property
    def litellm_config(self) -> Path:
        return self.project_dir / LITELLM_CONFIG

    @property
    def caddyfile(self) -> Path:
        return self.project_dir / CADDYFILE

    @property
    def routing_rules(self) -> Path:
        return self.project_dir / ROUTING_RULES

    @property
    def compose_overrides(self) -> tuple[Path, ...]:
        """Extra compose files from OPS_COMPOSE_OVERRIDES (comma-separated, relative to the project)."""
        names = [n.strip() for n in self.effective_env.get("OPS_COMPOSE_OVERRIDES", "").split(",") if n.strip()]
        paths = tuple((self.project_dir / n).resolve() for n in names)
        for path in paths:
            if not path.is_relative_to(self.project_dir):
                raise ConfigError(f"OPS_COMPOSE_OVERRIDES names {path}, outside the project directory")
            if not path.is_file():
                raise ConfigError(f"OPS_COMPOSE_OVERRIDES names {path}, which does not exist")
        return paths

    @property
    def snapshots_dir(self) -> Path:
        return self.project_dir / ".ops" / "snapshots"

    @property
    def env_file(self) -> Path:
        return self.project_dir / ENV_FILE

    @property
    def env_example(self) -> Path:
        return self.project_dir / ENV_EXAMPLE

    @property
    def effective_env(self) -> dict[str, str]:
        """The example's values overlaid with vps.env's: what compose would see."""
        return {**self.example_env, **self.env}

    def _int(self, name: str) -> int:
        raw = self.effective_env.get(name, "")
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} must be a whole number of MB, got {raw!r}") from exc

    @property
    def vm_memory_mb(self) -> int:
        return self._int("VM_MEMORY_MB")

    @property
    def reserved_mb(self) -> int:
        """Memory kept for the OS and the Docker daemon, outside every container limit."""
        return self._int("OS_RESERVE_MB") + self._int("DOCKER_RESERVE_MB")

    @property
    def swap_allowance_mb(self) -> int:
        """Swap counted into the budget (SWAP_ALLOWANCE_MB, 0 when unset): only after measuring the stack on the VM."""
        if not self.effective_env.get("SWAP_ALLOWANCE_MB", "").strip():
            return 0
        allowance = self._int("SWAP_ALLOWANCE_MB")
        if allowance < 0:
            raise ConfigError(f"SWAP_ALLOWANCE_MB must be 0 or more, got {allowance}")
        return allowance

    @property
    def memory_budget_mb(self) -> int:
        return self.vm_memory_mb - self.reserved_mb + self.swap_allowance_mb

    @property
    def profiles(self) -> tuple[str, ...]:
        raw = self.effective_env.get("COMPOSE_PROFILES", "")
        return tuple(p.strip() for p in raw.split(",") if p.strip())

    def require_safe_secrets(self) -> None:
        """Raise ConfigError if vps.env is missing or holds a placeholder or weak secret."""
        if not self.env_file_present:
            raise ConfigError(f"{self.env_file} not found; create it with `ops secrets init`")
        problems = secret_problems(self.env)
        if problems:
            raise ConfigError(f"{self.env_file} is not safe to use: " + "; ".join(problems))


def load_settings(project_dir: Path) -> Settings:
    """Given the project directory, return its Settings.

    Raise ConfigError if the directory or vps.env.example is missing, or
    either env file is malformed.
    """
    project_dir = project_dir.resolve()
    if not project_dir.is_dir():
        raise ConfigError(f"project directory {project_dir} does not exist")
    example = project_dir / ENV_EXAMPLE
    if not example.is_file():
        raise ConfigError(f"{example} not found: is {project_dir} the stack's project directory?")
    env_path = project_dir / ENV_FILE
    present = env_path.is_file()
    # OPS_* from the process environment win over vps.env, as compose's do: a container
    # (the observer) or a one-off command points ops elsewhere without editing the file.
    overrides = {k: v for k, v in os.environ.items() if k.startswith("OPS_") and k != "OPS_PROJECT_DIR"}
    return Settings(
        project_dir=project_dir,
        env={**(read_env_file(env_path) if present else {}), **overrides},
        example_env=read_env_file(example),
        env_file_present=present,
    )


def redact_url(url: str) -> str:
    """Given a service URL, return it fit for a log: the password (and a ``password=`` query value) as ``***``.

    Text that cannot be parsed safely (no ``scheme://``, an ``@`` outside the
    host part, a malformed host or port) is cut to its scheme: part of a
    password is still a password.
    """
    scheme, sep, _ = url.partition("://")
    if not sep:
        return "***" if url else ""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port, which is often a password holding a / or #
    except ValueError:
        return f"{scheme}://***"
    if "@" in url.replace(parts.netloc, "", 1):
        return f"{scheme}://***"
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        shown += "?" + urlencode([(k, "***" if k.lower() in ("password", "pass", "pwd") else v) for k, v in pairs], safe="*")
    return shown


def check_url(name: str, url: str, schemes: tuple[str, ...], example: str) -> SplitResult:
    """Given a variable's name and its URL, return the parsed URL.

    Raise ConfigError naming the variable and the problem, with the password
    redacted, if the scheme is not one of schemes or the URL is malformed.
    """
    shown = redact_url(url)
    encode = "a password holding / # ? @ or : must be percent-encoded (/ as %2F, # as %23, @ as %40)"
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise ConfigError(
            f"{name} is malformed (got {shown}): its host or port cannot be read, the port must be a number "
            f"from 1 to 65535 and {encode}; it must look like {example}"
        ) from None
    if parts.scheme not in schemes:
        raise ConfigError(f"{name} must start with {' or '.join(s + '://' for s in schemes)}, got {shown}; like {example}")
    if "@" in url.replace(parts.netloc, "", 1):
        raise ConfigError(f"{name} is malformed (got {shown}): an @ after the host; {encode}; it must look like {example}")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"{name} names no host (got {shown}); it must look like {example}")
    return parts
