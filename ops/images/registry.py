"""A read-only client of the registry HTTP API v2: does a manifest exist, and what is its digest.

Anonymous, as the VM pulls: a 401 with a Bearer challenge is answered with a
token from the challenge's realm, as distribution's token authentication
specifies (docs/spec/auth/token.md). HEAD requests only, which Docker Hub
does not count against its pull rate limit (source: docs.docker.com/docker-hub/usage/pulls:
a GET of a manifest counts as a pull, a HEAD does not).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

from ops.errors import ConfigError
from ops.images.reference import DOCKER_HUB, DOCKER_HUB_API, ImageRef

# source: OCI image-spec media-types.md and distribution's manifest-v2-2.md: the index (multi-platform) types first,
# so the digest pinned is the one every platform shares; the single-platform manifests for images without an index.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')

State = Literal["present", "missing", "unreachable", "error"]


@dataclass(frozen=True)
class Lookup:
    """What the registry said about one reference: its state, the manifest's digest if present, and why."""

    state: State
    digest: str | None = None
    detail: str = ""


def parse_registry_map(items: Sequence[str]) -> dict[str, str]:
    """Given NAME=URL items ("ghcr.io=http://127.0.0.1:5000"), return name -> base URL.

    Raise ConfigError for an item that is not NAME=http(s)://host[:port].
    """
    mapping = {}
    for item in items:
        name, eq, url = item.partition("=")
        if not eq or not name.strip() or not re.match(r"^https?://[^/\s]+/?$", url.strip()):
            raise ConfigError(f"registry map {item!r} is not NAME=URL such as ghcr.io=http://127.0.0.1:5000")
        mapping[name.strip()] = url.strip().rstrip("/")
    return mapping


def registry_base(registry: str, mapping: dict[str, str]) -> str:
    """Given a registry name from an image reference, return the base URL of its API (https unless mapped)."""
    if registry in mapping:
        return mapping[registry]
    return DOCKER_HUB_API if registry == DOCKER_HUB else f"https://{registry}"


class RegistryClient:
    """Look up manifests on the registries images name, anonymously."""

    def __init__(self, mapping: dict[str, str], timeout: float = 20) -> None:
        self.mapping = mapping
        self._http = httpx.Client(timeout=timeout, follow_redirects=True)

    def close(self) -> None:
        self._http.close()

    def lookup(self, ref: ImageRef) -> Lookup:
        """Given a reference, return whether its manifest exists (by digest if pinned, else by tag), with its digest."""
        base = registry_base(ref.registry, self.mapping)
        url = f"{base}/v2/{ref.repository}/manifests/{ref.digest or ref.tag}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        try:
            response = self._http.head(url, headers=headers)
            if response.status_code == 401:
                token = self._token(response, ref)
                if isinstance(token, Lookup):
                    return token
                headers["Authorization"] = f"Bearer {token}"
                response = self._http.head(url, headers=headers)
            if response.status_code == 200:
                digest = response.headers.get("docker-content-digest")
                if not digest:  # a registry may omit it on HEAD: the digest is the manifest's own sha256
                    digest = "sha256:" + hashlib.sha256(self._http.get(url, headers=headers).content).hexdigest()
                return Lookup("present", digest)
        except httpx.HTTPError as exc:
            return Lookup("unreachable", detail=f"cannot reach {_where(exc, base)}: {str(exc) or type(exc).__name__}")
        return _verdict(response.status_code, ref, base)

    def _token(self, challenged: httpx.Response, ref: ImageRef) -> str | Lookup:
        """Given a 401 response, return an anonymous pull token from its Bearer challenge, or a Lookup saying why not."""
        challenge = challenged.headers.get("www-authenticate", "")
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() != "bearer":
            return Lookup("error", detail=f"the registry asks for a login ({scheme or 'no challenge'}); ops checks anonymously")
        fields = dict(_CHALLENGE_PARAM.findall(params))
        if not fields.get("realm"):
            return Lookup("error", detail=f"the registry's Bearer challenge has no realm: {challenge!r}")
        query = {"scope": fields.get("scope") or f"repository:{ref.repository}:pull"}
        if fields.get("service"):
            query["service"] = fields["service"]
        answer = self._http.get(fields["realm"], params=query)
        if answer.status_code != 200:
            return Lookup("error", detail=f"the token service {fields['realm']} answered HTTP {answer.status_code}")
        try:
            body = answer.json()
        except ValueError:
            body = None
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            return Lookup("error", detail=f"the token service {fields['realm']} returned no token")
        return token


def _where(exc: httpx.HTTPError, base: str) -> str:
    """The scheme and host the failed request went to (the registry, or its token service)."""
    try:
        url = exc.request.url
    except RuntimeError:
        return base
    return f"{url.scheme}://{url.netloc.decode()}"


def _verdict(status: int, ref: ImageRef, base: str) -> Lookup:
    what = ref.digest or f"tag {ref.tag}"
    if status == 404:
        return Lookup("missing", detail=f"{what} not found in {ref.repository} on {base}")
    if status in (401, 403):
        # Docker Hub answers 401 for a repository that does not exist, as for a private one
        return Lookup("missing", detail=f"{ref.repository} on {base} does not exist or is private (anonymous pull refused)")
    if status == 429:
        return Lookup("error", detail=f"{base} is rate limiting this address (HTTP 429); try again later")
    return Lookup("error", detail=f"{base} answered HTTP {status} for {what} of {ref.repository}")
