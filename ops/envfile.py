"""Read and write dotenv files (vps.env) the way Docker Compose reads them.

Supported: ``KEY=value``, ``export KEY=value``, comments and blank lines,
double quotes (with ``\\n`` and ``\\"`` escapes) and single quotes (literal:
use them for values holding ``$``, such as bcrypt hashes).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ops.errors import ConfigError

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def parse_env_text(text: str, source: str = "<env>") -> dict[str, str]:
    """Given the text of a dotenv file, return its variables.

    Raise ConfigError naming the file and line if a line is neither a
    comment, blank, nor ``KEY=value``, or a quote is left open.
    """
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ConfigError(f"{source}:{number}: expected KEY=value, got {line.strip()[:60]!r}")
        key, raw = match.group(1), match.group(2).strip()
        values[key] = _unquote(raw, f"{source}:{number}")
    return values


def _unquote(raw: str, where: str) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        while quote == '"' and end > 0 and raw[end - 1] == "\\":
            end = raw.find(quote, end + 1)
        if end < 0:
            raise ConfigError(f"{where}: unterminated {quote} quote")
        body = raw[1:end]
        if quote == '"':
            body = body.replace("\\n", "\n").replace('\\"', '"')
        return body
    return re.sub(r"\s+#.*$", "", raw)


def read_env_file(path: Path) -> dict[str, str]:
    """Given a dotenv path, return its variables. Raise ConfigError if it is unreadable or malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_env_text(text, str(path))


def format_env_value(value: str) -> str:
    """Return value quoted for a dotenv file: single quotes when it holds ``$``, spaces or ``#``."""
    if value and re.fullmatch(r"[A-Za-z0-9_.:/@+=,-]+", value):
        return value
    if "'" in value:
        raise ConfigError("a value holding a single quote cannot be written safely to vps.env")
    return f"'{value}'"


def write_private_file(path: Path, text: str) -> None:
    """Create path with mode 600 and write text; raise ConfigError if it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError(f"{path} already exists; refusing to overwrite it (move it away first)") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def replace_private_file(path: Path, text: str) -> None:
    """Replace path's content with text atomically (a mode-600 temp file renamed over it).

    A crash leaves either the old file or the new one whole, never half of each. A symlink is
    followed (its target is replaced, the link kept); the file keeps its owner (when run as root).
    """
    path = path.resolve()
    owner = path.stat()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
        if os.geteuid() == 0:  # `sudo ops ...` must not leave the operator a vps.env only root can read
            os.fchown(handle.fileno(), owner.st_uid, owner.st_gid)
    os.replace(tmp, path)
