"""What `ops upgrade SERVICE --to VERSION` would change: the services it knows, versions, and the image lines.

Pure functions over the compose files' text (no Docker), so planning and bad input are
tested without an engine. The image tag is changed where compose takes it from: the
`image:` line of the last compose file that sets the service's image (docker-compose.vps.yml
on the VM; an override file listed in OPS_COMPOSE_OVERRIDES when one sets it). Only that line
changes; its quoting and comment stay (the line is found and rewritten as `ops images pin` does).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.errors import ConfigError, OpsError
from ops.files import read_text
from ops.images import _IMAGE_LINE, _image_lines
from ops.images.reference import ImageRef, parse_reference
from ops.stack import Stack


class UpgradeError(OpsError):
    """An upgrade was refused (bad input, a downgrade) or failed; the message names why."""


@dataclass(frozen=True)
class Kind:
    """One service the operator can upgrade, and what its upgrade touches.

    image_services change tag together (Langfuse's web and worker; Postgres and the init job
    that runs its psql); start are started and health-gated after the change; stop are stopped
    before the backup (so the copy is consistent); databases and volumes (compose names) are
    copied before and restored on a rollback; probes are the `ops health` names of the gate.
    """

    name: str
    image_services: tuple[str, ...]
    start: tuple[str, ...]
    stop: tuple[str, ...]
    databases: tuple[str, ...]
    volumes: tuple[str, ...]
    probes: tuple[str, ...]
    why: str  # what its migrations do, for the report


KINDS: dict[str, Kind] = {
    "n8n": Kind(
        "n8n",
        ("n8n",),
        ("n8n",),
        ("n8n",),
        ("n8n",),
        ("n8n-data",),
        ("n8n",),
        "n8n migrates its database at start, forward only",
    ),
    # ClickHouse holds Langfuse's traces and its own forward-only migrations (langfuse-web runs them at start):
    # its volume is copied with ClickHouse stopped
    "langfuse": Kind(
        "langfuse",
        ("langfuse-web", "langfuse-worker"),
        ("langfuse-web", "langfuse-worker"),
        ("langfuse-web", "langfuse-worker", "clickhouse"),
        ("langfuse",),
        ("clickhouse-data",),
        ("langfuse",),
        "Langfuse migrates Postgres and ClickHouse at start, forward only",
    ),
    "litellm": Kind(
        "litellm",
        ("litellm",),
        ("litellm",),
        ("litellm",),
        ("litellm",),
        (),
        ("litellm",),
        "LiteLLM migrates its database (with docker-compose.litellm-db.yml) at start, forward only",
    ),
    # the databases are every application database, found at run time (ops's own journal and lock stay)
    "postgres": Kind(
        "postgres",
        ("postgres", "postgres-init"),
        ("postgres",),
        (),
        (),
        (),
        ("postgres",),
        "a new Postgres major needs its data dumped and restored; a minor starts on the same files",
    ),
}
# the applications that hold connections to Postgres: stopped while it is copied and swapped
POSTGRES_CLIENTS = ("litellm", "n8n", "langfuse-web", "langfuse-worker")
# compose service -> its `ops health` probe
PROBE_OF = {"langfuse-web": "langfuse", "langfuse-worker": "langfuse"}

# a release tag: an optional v, 1 to 4 numbers, an optional -variant (18.6-trixie, v1.100.5, 2.41.0)
_VERSION = re.compile(r"^(?P<v>v?)(?P<numbers>\d+(?:\.\d+){0,3})(?P<variant>-[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True, order=True)
class Version:
    numbers: tuple[int, ...]
    tag: str = field(compare=False)

    @property
    def major(self) -> int:
        return self.numbers[0]

    def __str__(self) -> str:
        return self.tag


def parse_version(tag: str, what: str = "--to") -> Version:
    """Given a release tag (2.41.0, v1.101.0, 18.7-trixie), return it as a Version.

    Raise UpgradeError naming what (the option, or the image) if it is not a version.
    """
    match = _VERSION.match(tag.strip()) if len(tag) <= 128 else None
    if match is None:
        raise UpgradeError(
            f"{what} {tag!r} is not a release version: give the image tag of a release, such as 2.41.0, v1.101.0 "
            "or 18.7-trixie (not latest, a digest or a branch)"
        )
    numbers = tuple(int(n) for n in match["numbers"].split("."))
    return Version(numbers + (0,) * (4 - len(numbers)), tag.strip())


def kind_of(service: str) -> Kind:
    """Given the service the operator named, return its Kind. Raise UpgradeError naming the ones ops upgrades."""
    if service not in KINDS:
        raise UpgradeError(
            f"ops upgrade does not know {service!r}: it upgrades {', '.join(KINDS)} (the services whose database "
            "migrations only go forward); change other images in docker-compose.vps.yml and run `ops deploy`"
        )
    return KINDS[service]


@dataclass(frozen=True)
class ImageLine:
    """The `image:` line compose takes a service's image from: its file, 0-based line index and reference."""

    service: str
    path: Path
    index: int
    ref: ImageRef

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "file": self.path.name, "line": self.index + 1, "image": self.ref.text}


def _stack(path: Path) -> Stack | None:
    """The file's lines as a Stack (not parsed here: an override may use compose's own tags, !override and !reset,
    which YAML loaders refuse; compose's config says what it means, and run checks the line against it)."""
    return Stack(path, read_text(path), {}) if path.exists() else None


def image_lines(files: tuple[Path, ...], services: tuple[str, ...]) -> dict[str, ImageLine]:
    """Given the compose files in compose's order and service names, return each service's winning `image:` line.

    Raise UpgradeError if no file sets a service's image, and ConfigError if a line cannot be read.
    """
    found: dict[str, ImageLine] = {}
    for path in files:
        stack = _stack(path)
        if stack is None:
            continue
        for service, line in _image_lines(stack).items():
            if service in services:
                found[service] = ImageLine(service, path, line.index, parse_reference(line.match.group("ref")))
    missing = [s for s in services if s not in found]
    if missing:
        names = ", ".join(p.name for p in files)
        raise UpgradeError(f"no `image:` line for {', '.join(missing)} in {names}: ops upgrade changes that line")
    return found


def new_reference(ref: ImageRef, to: Version) -> str:
    """Given the current reference and the new version, return the new reference: same name, the new tag.

    A digest pinned for the old tag is dropped (it names the old image; `ops images pin` pins the new one).
    """
    return f"{ref.name}:{to.tag}"


def rewrite_line(text: str, index: int, new_ref: str) -> str:
    """Given a compose file's text, a line index and a reference, return the text with that `image:` line's
    reference replaced (indentation, quotes, comment and line ending kept). Raise ConfigError if it is no image line."""
    lines = text.splitlines(keepends=True)
    body = lines[index].rstrip("\r\n")
    ending = lines[index][len(body) :]
    match = _IMAGE_LINE.match(body)
    if match is None:
        raise ConfigError(f"line {index + 1} is not an image: line: {body.strip()!r}")
    lines[index] = f"{match['head']}{match['q']}{new_ref}{match['q']}{match['tail']}{ending}"
    return "".join(lines)


def rewritten_files(lines: dict[str, ImageLine], new_refs: dict[str, str]) -> dict[Path, str]:
    """Given the winning image lines and service -> new reference, return each file's new text."""
    texts: dict[Path, str] = {}
    for service, line in lines.items():
        text = texts.get(line.path) or read_text(line.path)
        texts[line.path] = rewrite_line(text, line.index, new_refs[service])
    return texts


def require_unchanged(planned: dict[Path, str]) -> dict[Path, str]:
    """Given each compose file's text as the plan read it, return them if the files still read so.

    Raise UpgradeError naming the files changed since (an edit or a `git pull` while the new image was
    pulled): writing the plan's text would silently undo that change.
    """
    changed = [path.name for path, text in planned.items() if read_text(path) != text]
    if changed:
        raise UpgradeError(
            f"{', '.join(changed)} changed since the upgrade read it (an edit or a git pull while the image was "
            "pulled?): nothing was upgraded; run the command again"
        )
    return dict(planned)


def current_version(kind: Kind, lines: dict[str, ImageLine]) -> Version:
    """Given a kind and its image lines, return the version they run. Raise UpgradeError if a tag is not a
    version, or if services that move together (Langfuse's web and worker) run different ones."""
    versions = {}
    for service in kind.image_services:
        ref = lines[service].ref
        if ref.tag is None:
            raise UpgradeError(f"{service}'s image {ref.text} is pinned by digest alone: ops upgrade needs a tag to compare")
        versions[service] = parse_version(ref.tag, f"{service}'s image tag")
    if len({v.numbers for v in versions.values()}) > 1:
        found = ", ".join(f"{s} {v}" for s, v in versions.items())
        raise UpgradeError(f"{found}: these run together and must be on one version; put them on the same tag first")
    return versions[kind.image_services[0]]


def check_newer(kind: Kind, current: Version, to: Version) -> None:
    """Given the running and the wanted version, return if to is newer. Raise UpgradeError for the same
    version or a downgrade (a newer version's migrations cannot be undone by an older image)."""
    if to == current:
        raise UpgradeError(f"{kind.name} is already at {current}: nothing to upgrade")
    if to < current:
        raise UpgradeError(
            f"{kind.name} {current} -> {to} is a downgrade, which ops upgrade refuses: {kind.why}, so an older image "
            f"may not start on the newer data. To go back, restore the backup taken before the upgrade "
            f"(`ops backup restore ID --into live`)"
        )
    if current.tag.startswith("v") != to.tag.startswith("v"):
        want = "starts with v" if current.tag.startswith("v") else "has no leading v"
        raise UpgradeError(f"{kind.name}'s tags {want} ({current}): write --to the same way")


def plan_hash(service: str, current: str, to: str, files: dict[Path, str]) -> str:
    """A short hash of what an upgrade changes (journaled with it)."""
    digest = hashlib.sha256(f"{service}|{current}|{to}".encode())
    for path, text in sorted(files.items()):
        digest.update(str(path).encode() + b"\0" + text.encode())
    return digest.hexdigest()[:16]


def probes_for(services: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Given compose services, return their `ops health` probe names (in order, once each; unknown ones left out)."""
    from ops.health.probes import PROBES

    known = {p.NAME for p in PROBES}
    out: list[str] = []
    for service in services:
        name = PROBE_OF.get(service, service)
        if name in known and name not in out:
            out.append(name)
    return tuple(out)
