"""Image references as Docker reads them: registry, repository, tag and digest.

The grammar and the Docker Hub normalisation follow distribution/reference
(regexp.go and normalize.go), the library Docker and Compose parse image names with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ops.errors import ConfigError

# source: distribution/reference normalize.go: defaultDomain, legacyDefaultDomain, officialRepoPrefix.
DOCKER_HUB = "docker.io"
DOCKER_HUB_LEGACY = "index.docker.io"
OFFICIAL_PREFIX = "library/"
# source: distribution/reference normalize.go: "the actual domain of Docker Hub's registry is registry-1.docker.io"
DOCKER_HUB_API = "https://registry-1.docker.io"

# source: distribution/reference regexp.go (pathComponent, tag, domainAndPort); digests: sha256 only, as pinned here
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN = re.compile(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
)
_TAG = re.compile(r"^\w[\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class ImageRef:
    """One image reference: `text` as written, and what it names."""

    text: str
    registry: str  # "docker.io", "ghcr.io", "127.0.0.1:5000"
    repository: str  # "library/postgres", "berriai/litellm"
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The reference without tag or digest, as written ("postgres", "ghcr.io/berriai/litellm")."""
        return self.text.split("@", 1)[0].rsplit(":", 1)[0] if self.tag else self.text.split("@", 1)[0]

    def pinned(self, digest: str) -> str:
        """Given a digest, return this reference as name:tag@digest (the tag kept for readers)."""
        return f"{self.name}{':' + self.tag if self.tag else ''}@{digest}"


def parse_reference(text: str) -> ImageRef:
    """Given an image reference ("postgres:15", "ghcr.io/o/n:v1@sha256:..."), return its parts.

    Raise ConfigError naming what is wrong if it is not a reference Docker would pull.
    """
    if "$" in text:
        raise ConfigError(f"image {text!r} uses a variable; ops images works on literal references only")
    rest, _, digest = text.partition("@")
    if digest and not _DIGEST.match(digest):
        raise ConfigError(f"image {text!r} has a malformed digest (expected sha256: and 64 hex digits)")
    first, slash, remainder = rest.partition("/")
    if slash and (first == "localhost" or "." in first or ":" in first or first.lower() != first):
        registry, path = first, remainder
        if not _DOMAIN.match(registry):
            raise ConfigError(f"image {text!r} names the registry {registry!r}, which is not a host[:port]")
    else:
        registry, path = DOCKER_HUB, rest
    registry = DOCKER_HUB if registry == DOCKER_HUB_LEGACY else registry
    tag: str | None = None
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ConfigError(f"image {text!r} has a malformed tag {tag!r}")
    if not _PATH.match(path):
        raise ConfigError(f"image {text!r}: repository {path!r} must be lowercase letters, digits and . _ - separators")
    if registry == DOCKER_HUB and "/" not in path:
        path = OFFICIAL_PREFIX + path
    if tag is None and not digest:
        raise ConfigError(f"image {text!r} has neither tag nor digest (it would mean 'latest')")
    return ImageRef(text, registry, path, tag, digest or None)
