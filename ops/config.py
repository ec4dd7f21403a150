"""One typed Settings object built from the project directory, vps.env and its example.

Everything below the CLI takes a Settings; nothing else reads environment
variables or guesses paths.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from ops.envfile import read_env_file
from ops.errors import ConfigError
from ops.secrets import is_placeholder, placeholder_domain, secret_problems

COMPOSE_FILE = "docker-compose.vps.yml"
LITELLM_CONFIG = "litellm-config.yaml"
CADDYFILE = "Caddyfile"
ENV_FILE = "vps.env"
ENV_EXAMPLE = "vps.env.example"
ROUTING_RULES = "routing-rules.yaml"


DEFAULT_ALERTS_STATE = "/var/lib/aistack/alerts.json"  # root's, as the cron job is: not in the project's .ops
DEFAULT_DISK_PATHS = ("/var/lib/docker",)  # with the project's directory: the data root and the project's filesystem


@dataclass(frozen=True)
class SmtpSettings:
    """The SMTP relay alerts are mailed through (STARTTLS always), and who gets them."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    user: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""  # a CA bundle to trust instead of the system's (a private relay; the tests' server)


@dataclass(frozen=True)
class TelegramAlertSettings:
    """The bot of slices 4 and 6 and the chat alerts go to."""

    token: str = field(repr=False)
    chat_id: int
    api: str = ""  # the Bot API's base; empty is Telegram's


def _address(name: str, value: str) -> str:
    if not value or "@" not in value or any(c.isspace() for c in value) or value.startswith("@") or value.endswith("@"):
        raise ConfigError(f"{name} must be an e-mail address like alerts@example.org, got {value!r}")
    return value


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
    def verify_time_factor(self) -> float:
        """OPS_VERIFY_TIME_FACTOR: what the slices' time limits (the plan's "within 3 s") are multiplied by.

        1 (the plan's limits) unless set; a test machine running every tier at once on 2 cores sets more.
        Raise ConfigError if it is not a number of at least 1.
        """
        raw = self.effective_env.get("OPS_VERIFY_TIME_FACTOR", "").strip() or "1"
        try:
            factor = float(raw)
        except ValueError:
            factor = 0.0
        if not factor >= 1 or factor == float("inf"):
            raise ConfigError(f"OPS_VERIFY_TIME_FACTOR must be a number of at least 1, got {raw!r}")
        return factor

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

    @property
    def caddy_url(self) -> str:
        """Where ops reaches Caddy on this machine (OPS_CADDY_URL; default https://127.0.0.1, its published 443).

        Raise ConfigError naming OPS_CADDY_URL if it is not an http(s) URL.
        """
        url = (self.effective_env.get("OPS_CADDY_URL") or "https://127.0.0.1").rstrip("/")
        check_url("OPS_CADDY_URL", url, ("http", "https"), "https://127.0.0.1")
        return url

    @property
    def smtp(self) -> SmtpSettings | None:
        """Return the SMTP relay for alerts, or None when OPS_SMTP_HOST is empty (no e-mail).

        Raise ConfigError naming the variable: a port that is not 1-65535 or is 465 (implicit TLS), a sender or
        recipient that is no address, no recipient, or OPS_SMTP_USER without a password (or with a placeholder one).
        """
        env = self.effective_env
        host = env.get("OPS_SMTP_HOST", "").strip()
        if not host:
            return None
        raw_port = env.get("OPS_SMTP_PORT", "").strip() or "587"
        if not raw_port.isdigit() or not 1 <= int(raw_port) <= 65535:
            raise ConfigError(f"OPS_SMTP_PORT must be a port number (587 for STARTTLS), got {raw_port!r}")
        if int(raw_port) == 465:  # implicit TLS: a STARTTLS client waits for a greeting that never comes, "timed out"
            raise ConfigError("OPS_SMTP_PORT=465 is SMTP over implicit TLS, which ops does not speak: use 587 (STARTTLS)")
        recipients = tuple(_address("OPS_SMTP_TO", r.strip()) for r in env.get("OPS_SMTP_TO", "").split(",") if r.strip())
        if not recipients:
            raise ConfigError("OPS_SMTP_TO is empty: name who gets the alerts (comma-separated addresses)")
        user, password = env.get("OPS_SMTP_USER", "").strip(), env.get("OPS_SMTP_PASSWORD", "")
        if user and is_placeholder(password):
            raise ConfigError("OPS_SMTP_PASSWORD is empty or a placeholder while OPS_SMTP_USER is set: paste the relay's")
        return SmtpSettings(
            host=host,
            port=int(raw_port),
            sender=_address("OPS_SMTP_FROM", env.get("OPS_SMTP_FROM", "").strip()),
            recipients=recipients,
            user=user,
            password=password if user else "",
            ca_file=env.get("OPS_SMTP_CA_FILE", "").strip(),
        )

    @property
    def alert_telegram(self) -> TelegramAlertSettings | None:
        """Return the bot and chat alerts go to, or None without a bot token or a chat.

        The chat is OPS_ALERT_TELEGRAM_CHAT, else the first of OPS_TELEGRAM_CHAT_IDS. Raise ConfigError naming
        the variable if the chat is not a chat id (a number).
        """
        env = self.effective_env
        token = env.get("OPS_TELEGRAM_BOT_TOKEN", "").strip()
        name, chat = "OPS_ALERT_TELEGRAM_CHAT", env.get("OPS_ALERT_TELEGRAM_CHAT", "").strip()
        if not chat:
            name, chat = "OPS_TELEGRAM_CHAT_IDS", env.get("OPS_TELEGRAM_CHAT_IDS", "").split(",")[0].strip()
        if not token or not chat:
            return None
        try:
            chat_id = int(chat)
        except ValueError:
            raise ConfigError(f"{name}: {chat!r} is not a Telegram chat id (a number)") from None
        return TelegramAlertSettings(token, chat_id, env.get("OPS_TELEGRAM_API", "").strip())

    @property
    def alerts_state_file(self) -> Path:
        """Return where `ops alerts check` keeps its state (OPS_ALERTS_STATE, relative to the project, or root's default)."""
        path = Path(self.effective_env.get("OPS_ALERTS_STATE", "").strip() or DEFAULT_ALERTS_STATE)
        return path if path.is_absolute() else self.project_dir / path

    @property
    def alert_disk_paths(self) -> tuple[Path, ...]:
        """Return the directories whose filesystems the disk alert watches (OPS_ALERT_DISK_PATHS, comma-separated).

        Default: the project's directory and Docker's data root. Raise ConfigError if a named path is relative.
        """
        raw = [p.strip() for p in self.effective_env.get("OPS_ALERT_DISK_PATHS", "").split(",") if p.strip()]
        if not raw:
            return (self.project_dir, *(Path(p) for p in DEFAULT_DISK_PATHS))
        for path in raw:
            if not Path(path).is_absolute():
                raise ConfigError(f"OPS_ALERT_DISK_PATHS names {path!r}: give absolute paths")
        return tuple(Path(p) for p in raw)

    @property
    def gcp_project(self) -> str:
        """OPS_GCP_PROJECT, the project id Cloud Monitoring's alerts live in. Raise ConfigError if empty or malformed."""
        project = self.effective_env.get("OPS_GCP_PROJECT", "").strip()
        if not project:
            raise ConfigError(
                "OPS_GCP_PROJECT is empty: set the id of the GCP project the VM runs in (`gcloud config get-value project`)"
            )
        # source: cloud.google.com/resource-manager/docs/creating-managing-projects (6-30 characters: lowercase
        # letters, digits and hyphens, a letter first, no hyphen last)
        if not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", project):
            raise ConfigError(f"OPS_GCP_PROJECT {project!r} is not a project id: 6-30 lowercase letters, digits and hyphens")
        return project

    @property
    def gcp_alert_emails(self) -> tuple[str, ...]:
        """The addresses Cloud Monitoring's e-mail channels send to: OPS_GCP_ALERT_EMAILS, else OPS_SMTP_TO, else ACME_EMAIL.

        Comma-separated. Raise ConfigError naming the variable if an address is malformed or a placeholder.
        """
        env = self.effective_env
        name = next((n for n in ("OPS_GCP_ALERT_EMAILS", "OPS_SMTP_TO", "ACME_EMAIL") if env.get(n, "").strip()), "")
        if not name:
            raise ConfigError("OPS_GCP_ALERT_EMAILS is empty (and OPS_SMTP_TO and ACME_EMAIL): name who gets the alerts")
        emails = [_address(name, e.strip()) for e in env[name].split(",") if e.strip()]
        for email in emails:
            if placeholder_domain(email.rpartition("@")[2]):
                raise ConfigError(f"{name} holds the placeholder {email!r}: set the address Cloud Monitoring alerts go to")
        return tuple(dict.fromkeys(emails))

    @property
    def gcp_monitoring_endpoint(self) -> str:
        """OPS_GCP_MONITORING_ENDPOINT: host:port of a Cloud Monitoring fake, spoken to over plain gRPC; empty is Google's.

        Raise ConfigError unless the host is 127.0.0.1, localhost or [::1] and the port a number: plain gRPC
        carries neither credentials nor encryption, so it never leaves this machine.
        """
        endpoint = self.effective_env.get("OPS_GCP_MONITORING_ENDPOINT", "").strip()
        host, _, port = endpoint.rpartition(":")
        loopback = host in ("127.0.0.1", "localhost", "[::1]") and re.fullmatch(r"[1-9][0-9]{0,4}", port)
        if endpoint and not (loopback and int(port) <= 65535):
            raise ConfigError(
                f"OPS_GCP_MONITORING_ENDPOINT {endpoint!r} must be 127.0.0.1:PORT, localhost:PORT or [::1]:PORT "
                "(a local fake, spoken to in plain gRPC without credentials); leave it empty for Google's API"
            )
        return endpoint

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
