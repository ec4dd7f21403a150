"""`ops images check` and `ops images pin`: the compose file's images against their registries.

check: given the compose file, return each service's image and whether its
registry has it (by digest when pinned, else by tag). pin: write each tag's
current digest into the compose file as `image: name:tag@sha256:...`, editing
only the image lines (comments and layout stay), atomically, idempotently.
Images a service builds itself (`build:`) are reported, not looked up.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ops.errors import ConfigError, OpsError
from ops.images.reference import ImageRef, parse_reference
from ops.images.registry import Lookup, RegistryClient, parse_registry_map
from ops.stack import Stack, load_stack

_IMAGE_KEY = re.compile(r"^\s*image\s*:")
_IMAGE_LINE = re.compile(r"^(?P<head>\s*image:\s*)(?P<q>[\"']?)(?P<ref>[^\s\"'#]+)(?P=q)(?P<tail>\s*(?:#.*)?)$")
_KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[^\s#:-][^:#]*?)\s*:\s*(?:#.*)?$")


class ImagesError(OpsError):
    """An image could not be resolved in its registry, so nothing was written."""


@dataclass(frozen=True)
class ImageStatus:
    """One service's image and what its registry said: present, missing, unreachable, error, or built (locally)."""

    service: str
    image: str
    state: str
    digest: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def line(self) -> str:
        return f"{self.state:<12}{self.service:<17}{self.image}  {self.digest or self.detail}"


@dataclass(frozen=True)
class ImagesReport:
    images: list[ImageStatus]

    @property
    def ok(self) -> bool:
        return all(i.state in ("present", "built") for i in self.images)

    @property
    def problems(self) -> list[ImageStatus]:
        return [i for i in self.images if i.state not in ("present", "built")]

    @property
    def unreachable(self) -> str | None:
        """If no registry answered for any image looked up, the first failure's detail; else None."""
        looked_up = [i for i in self.images if i.state != "built"]
        if looked_up and all(i.state == "unreachable" for i in looked_up):
            return looked_up[0].detail
        return None

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "images": [i.to_dict() for i in self.images]}


@dataclass(frozen=True)
class PinChange:
    service: str
    line: int
    old: str
    new: str


@dataclass(frozen=True)
class PinResult:
    path: Path
    changes: list[PinChange]
    unchanged: list[str]
    diff: str
    written: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "changes": [asdict(c) for c in self.changes],
            "unchanged": self.unchanged,
            "diff": self.diff,
            "written": self.written,
        }


@dataclass(frozen=True)
class _ImageLine:
    service: str
    index: int  # 0-based line index
    match: re.Match[str]


def _refs(stack: Stack, lines: dict[str, _ImageLine] | None = None) -> dict[str, ImageRef]:
    """Given the stack (and its image lines), return service -> parsed image for the services that pull theirs.

    Raise ConfigError naming the service (and line) of a malformed reference.
    """
    refs = {}
    for service in stack.services:
        if service.image and "build" not in service.spec:
            try:
                refs[service.name] = parse_reference(service.image)
            except ConfigError as exc:
                where = f" line {lines[service.name].index + 1}" if lines and service.name in lines else ""
                raise ConfigError(f"{stack.path.name}{where}, service {service.name!r}: {exc}") from None
    return refs


def _lookup_all(refs: dict[str, ImageRef], registry_map: Sequence[str], by_tag: bool) -> dict[str, Lookup]:
    """Given service -> reference, return service -> Lookup, asking once per distinct reference."""
    client = RegistryClient(parse_registry_map(registry_map))
    try:
        seen: dict[ImageRef, Lookup] = {}
        found = {}
        for service, ref in refs.items():
            key = replace(ref, digest=None) if by_tag and ref.tag else ref
            if key not in seen:
                seen[key] = client.lookup(key)
            found[service] = seen[key]
        return found
    finally:
        client.close()


def check_images(compose_file: Path, registry_map: Sequence[str] = ()) -> ImagesReport:
    """Given the compose file (and NAME=URL registry overrides), return each service's image and its registry's answer.

    Raise ConfigError if the file or an image reference is malformed, or a registry override is.
    """
    stack = load_stack(compose_file)
    refs = _refs(stack)
    lookups = _lookup_all(refs, registry_map, by_tag=False)
    statuses = []
    for service in stack.services:
        if not service.image:
            continue
        if service.name not in lookups:
            statuses.append(ImageStatus(service.name, service.image, "built", detail="built from its Dockerfile, not pulled"))
            continue
        found = lookups[service.name]
        statuses.append(ImageStatus(service.name, service.image, found.state, found.digest, found.detail))
    return ImagesReport(statuses)


def _image_lines(stack: Stack) -> dict[str, _ImageLine]:
    """Given the stack, return service -> its `image:` line. Raise ConfigError naming a line pin cannot edit."""
    lines = stack.text.splitlines()
    found: dict[str, _ImageLine] = {}
    for index, line in enumerate(lines):
        if not _IMAGE_KEY.match(line):
            continue
        match = _IMAGE_LINE.match(line)
        if match is None:
            raise ConfigError(
                f"{stack.path.name} line {index + 1}: cannot read the image in {line.strip()!r}; "
                "write it as image: name:tag (one reference, optionally quoted, then an optional comment)"
            )
        indent = len(line) - len(line.lstrip())
        for above in reversed(lines[:index]):
            stripped = above.strip()
            if not stripped or stripped.startswith("#") or len(above) - len(above.lstrip()) >= indent:
                continue
            owner = _KEY_LINE.match(above)
            if owner is not None:
                name = owner.group("key").strip("\"'")
                found[name] = _ImageLine(name, index, match)
            break
    return found


def pin_images(compose_file: Path, registry_map: Sequence[str] = (), dry_run: bool = False) -> PinResult:
    """Given the compose file, write each pulled image's current digest for its tag into its `image:` line.

    Return the changes and their unified diff (written unless dry_run; a pinned line
    whose digest is current stays as it is). Raise ConfigError if an image is not on
    an `image:` line of its own or is malformed, and ImagesError naming each image
    its registry did not resolve; in both cases nothing is written.
    """
    stack = load_stack(compose_file)
    lines = _image_lines(stack)
    for spec in stack.services:
        line = lines.get(spec.name)
        if spec.image and "build" not in spec.spec and (line is None or line.match.group("ref") != spec.image):
            raise ConfigError(
                f"{compose_file.name}, service {spec.name!r}: its image {spec.image!r} is not written on an "
                "image: line of its own, so pin cannot edit it"
            )
    refs = _refs(stack, lines)
    lookups = _lookup_all({s: r for s, r in refs.items() if r.tag}, registry_map, by_tag=True)
    failed = [f"{s} ({refs[s].text}): {found.state}, {found.detail}" for s, found in lookups.items() if found.digest is None]
    if failed:
        raise ImagesError(f"cannot pin, nothing written: {'; '.join(failed)}")
    text_lines = stack.text.splitlines(keepends=True)
    changes, unchanged = [], []
    for service, ref in refs.items():
        digest = lookups[service].digest if service in lookups else None
        new = ref.pinned(digest) if digest else ref.text
        if new == ref.text:
            unchanged.append(service)
            continue
        match = lines[service].match
        ending = text_lines[lines[service].index][len(match.group(0)) :]
        quote = match.group("q")
        text_lines[lines[service].index] = f"{match.group('head')}{quote}{new}{quote}{match.group('tail')}{ending}"
        changes.append(PinChange(service, lines[service].index + 1, ref.text, new))
    new_text = "".join(text_lines)
    diff = "".join(
        difflib.unified_diff(stack.text.splitlines(keepends=True), text_lines, f"a/{compose_file.name}", f"b/{compose_file.name}")
    )
    written = bool(changes) and not dry_run
    if written:
        _replace_file(compose_file, new_text)
    return PinResult(compose_file, changes, unchanged, diff, written)


def _replace_file(path: Path, text: str) -> None:
    """Write text to path atomically (a temp file renamed over it), keeping the file's mode."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
