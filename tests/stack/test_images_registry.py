"""`ops images check` and `ops images pin` against a real registry on loopback.

The registry is Debian's docker-registry (distribution 2.8, the code Docker Hub's
API grew from), with token authentication: a 401 carries a Bearer challenge and a
small token service here signs the JWTs the registry verifies, so ops follows the
same anonymous token flow it follows on Docker Hub and GHCR. Every image of the
project's compose file is pushed with skopeo under its own name (docker.io names
under library/ as on Docker Hub), each from a tiny OCI layout of its own (so each
has its own digest); postgres as a two-platform index, whose digest is the one to pin.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ops.images.reference import ImageRef, parse_reference
from ops.local.processes import LOOPBACK, _Service, wait_until
from ops.stack import load_stack
from tests.conftest import REPO, require

pytestmark = pytest.mark.stack
SERVICE = "aistack-test-registry"
ISSUER = "aistack-test-token-issuer"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class TokenService:
    """Issues anonymous Bearer tokens for whatever scope is asked, signed with a self-signed certificate."""

    def __init__(self, directory: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = directory / "token-root.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[dict[str, list[str]]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                service.requests.append(query)
                body = json.dumps({"token": service.token(query.get("scope", []), query.get("service", [""])[0])}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def token(self, scopes: list[str], audience: str) -> str:
        # source: distribution docs/spec/auth/jwt.md (claims: iss, sub, aud, exp, nbf, iat, jti, access)
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")[0], ":".join(scope.split(":")[1:-1]), scope.split(":")[-1]
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": "", "aud": audience, "exp": now + 300, "nbf": now - 10, "iat": now}
        claims |= {"jti": uuid.uuid4().hex, "access": access}
        # source: distribution registry/auth/token/token.go: the signing key comes from the x5c chain, checked against
        # the root bundle
        x5c = [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"x5c": x5c})

    def pull_scopes(self) -> set[str]:
        return {s for q in self.requests for s in q.get("scope", []) if s.endswith(":pull")}


class RegistryServer(_Service):
    """Debian's docker-registry on a loopback port, storage in its own directory, token auth."""

    name = "registry"

    def __init__(self, tokens: TokenService) -> None:
        super().__init__()
        self.tokens = tokens

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> RegistryServer:
        config = self.dir / "config.yml"
        # source: distribution docs/configuration.md (storage.filesystem.rootdirectory, http.addr, auth.token)
        config.write_text(
            json.dumps(
                {
                    "version": 0.1,
                    "log": {"level": "warn"},
                    "storage": {"filesystem": {"rootdirectory": str(self.dir / "storage")}},
                    "http": {"addr": f"{LOOPBACK}:{self.port}"},
                    "auth": {
                        "token": {
                            "realm": self.tokens.url,
                            "service": SERVICE,
                            "issuer": ISSUER,
                            "rootcertbundle": str(self.tokens.bundle),
                        }
                    },
                }
            )
        )
        self._spawn([str(shutil.which("docker-registry")), "serve", str(config)])
        wait_until(
            lambda: self._check_alive() and httpx.get(f"{self.url}/v2/", timeout=2).status_code == 401, 30, "docker-registry"
        )
        return self


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    require(shutil.which("docker-registry"), "docker-registry (apt-get install docker-registry)")
    require(shutil.which("skopeo"), "skopeo (apt-get install skopeo)")
    tokens = TokenService(tmp_path_factory.mktemp("tokens"))
    tokens.thread.start()
    try:
        with RegistryServer(tokens) as server:
            yield server
    finally:
        tokens.server.shutdown()
        tokens.server.server_close()


def _blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def _oci_layout(layout: Path, label: str, platforms: tuple[str, ...]) -> str:
    """Write an OCI layout tagged `image` holding one tiny image per platform (an index if more than one); return its digest."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    manifests = []
    for arch in platforms:
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w") as archive:
            content = f"stand-in for {label} on {arch}\n".encode()
            info = tarfile.TarInfo("standin.txt")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        layer = _blob(layout, gzip.compress(tar.getvalue(), mtime=0))
        diff_id = "sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()
        config = _blob(
            layout,
            json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode(),
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
        }
        manifests.append({"mediaType": OCI_MANIFEST, **_blob(layout, json.dumps(manifest).encode())})
        manifests[-1]["platform"] = {"architecture": arch, "os": "linux"}
    top = manifests[0]
    if len(manifests) > 1:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        top = {"mediaType": OCI_INDEX, **_blob(layout, json.dumps(index).encode())}
    ref = {k: v for k, v in top.items() if k != "platform"} | {"annotations": {"org.opencontainers.image.ref.name": "image"}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [ref]}))
    return str(top["digest"])


def push(registry: RegistryServer, ref: ImageRef, workdir: Path, platforms: tuple[str, ...] = ("amd64",)) -> str:
    """Push a tiny image of its own under ref's repository and tag; return the registry's digest for it."""
    layout = workdir / uuid.uuid4().hex
    digest = _oci_layout(layout, ref.text, platforms)
    digestfile = workdir / f"{layout.name}.digest"
    subprocess.run(
        ["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "--digestfile", str(digestfile),
         f"oci:{layout}:image", f"docker://{LOOPBACK}:{registry.port}/{ref.repository}:{ref.tag}"],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert digestfile.read_text().strip() == digest
    return digest


@pytest.fixture(scope="module")
def pushed(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every image the compose file pulls, pushed: image reference -> digest (postgres as a two-platform index)."""
    workdir = tmp_path_factory.mktemp("layouts")
    digests = {}
    for service in load_stack(REPO / "docker-compose.vps.yml").services:
        if service.image and "build" not in service.spec and service.image not in digests:
            platforms = ("amd64", "arm64") if service.name == "postgres" else ("amd64",)
            digests[service.image] = push(registry, parse_reference(service.image), workdir, platforms)
    return digests


def ops(project: Path, registry: RegistryServer, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `ops images ...` with every registry the compose file names mapped to the loopback registry."""
    names = {parse_reference(s.image).registry for s in load_stack(REPO / "docker-compose.vps.yml").services if s.image}
    maps = [arg for name in sorted(names) for arg in ("--registry-map", f"{name}={registry.url}")]
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", "images", *args, "--project-dir", str(project), *maps],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def lines_by_service(stdout: str) -> dict[str, list[str]]:
    return {fields[1]: fields for fields in (line.split() for line in stdout.splitlines()) if len(fields) >= 3}


def test_check_finds_present_and_missing_tags_and_digests(
    project: Path, registry: RegistryServer, pushed: dict[str, str]
) -> None:
    compose = project / "docker-compose.vps.yml"
    stack = load_stack(compose)
    n8n, redis = stack.service("n8n").image, stack.service("redis").image
    assert n8n and redis
    absent_digest = "sha256:" + "0" * 64
    text = compose.read_text().replace(f"image: {n8n}", f"image: {parse_reference(n8n).name}:0.0.0-never-pushed")
    compose.write_text(text.replace(f"image: {redis}", f"image: {redis}@{absent_digest}"))

    result = ops(project, registry, "check")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    rows = lines_by_service(result.stdout)
    for service in stack.services:
        if service.name in ("n8n", "redis") or not service.image:
            continue
        expected = ("built",) if "build" in service.spec else ("present", pushed[service.image])
        assert tuple(rows[service.name][i] for i in (0, 3)[: len(expected)]) == expected, rows[service.name]
    assert rows["n8n"][0] == "missing" and "0.0.0-never-pushed" in rows["n8n"][2]
    assert rows["redis"][0] == "missing" and absent_digest in " ".join(rows["redis"])
    assert "n8n (" in result.stderr and "redis (" in result.stderr
    # the anonymous token flow: the registry's challenge named the pull scope and the service
    assert f"repository:{parse_reference(n8n).repository}:pull" in registry.tokens.pull_scopes()
    assert all(q.get("service") == [SERVICE] for q in registry.tokens.requests)


def test_pin_writes_each_registry_digest_and_a_second_pin_changes_nothing(
    project: Path, registry: RegistryServer, pushed: dict[str, str]
) -> None:
    compose = project / "docker-compose.vps.yml"
    before = compose.read_text()

    dry = ops(project, registry, "pin", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert compose.read_text() == before
    for image, digest in pushed.items():
        assert f"+    image: {image}@{digest}" in dry.stdout

    pinned = ops(project, registry, "pin")
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    after = compose.read_text()
    old_lines, new_lines = before.splitlines(), after.splitlines()
    assert len(old_lines) == len(new_lines)
    for old, new in zip(old_lines, new_lines, strict=True):
        match = re.match(r"^(\s*image: )(\S+)(\s*#.*)?$", old)
        if match and match.group(2) in pushed:  # the digest added, the tag and any comment kept
            assert new == f"{match.group(1)}{match.group(2)}@{pushed[match.group(2)]}{match.group(3) or ''}"
        else:
            assert new == old  # comments, layout and the locally built image untouched
    # postgres is a two-platform index: the index's digest is pinned, the one every platform shares
    postgres = load_stack(compose).service("postgres").image
    assert postgres and postgres.endswith(pushed[postgres.split("@")[0]])

    again = ops(project, registry, "pin")
    assert again.returncode == 0 and "pinned 0 image(s)" in again.stdout, again.stdout + again.stderr
    assert compose.read_text() == after

    check = ops(project, registry, "check")
    assert check.returncode == 0, check.stdout + check.stderr  # each pinned digest exists


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda image: f"image: {image}@sha256:not-a-digest", "malformed digest"),
        (lambda image: f"image: >-\n      {image}", "not written on an image: line of its own"),
    ],
    ids=["bad-digest", "folded-scalar"],
)
def test_pin_refuses_a_malformed_image_line_and_writes_nothing(
    project: Path, registry: RegistryServer, edit: Any, message: str
) -> None:
    compose = project / "docker-compose.vps.yml"
    caddy = load_stack(compose).service("caddy").image
    broken = compose.read_text().replace(f"image: {caddy}", edit(caddy))
    compose.write_text(broken)

    result = ops(project, registry, "pin")

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: docker-compose.vps.yml") and "caddy" in result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert compose.read_text() == broken
