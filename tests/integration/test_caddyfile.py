"""The shipped Caddyfile on the real Caddy 2.10 (the image's version): what is behind basic auth, what is not.

The site addresses become http://127.0.0.1:PORT; the upstreams (n8n, litellm,
langfuse-web) do not resolve here, so a request Caddy lets through answers 502
(503 for LiteLLM, whose replicas Caddy looks up: no replica, no upstream) and
one it stops answers 401. Issue #10, items 6 and 23.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
import yaml

from ops import tools
from ops.local.processes import free_port, wait_until
from tests.conftest import REPO, require

pytestmark = pytest.mark.integration
PASSWORD = "correct-horse-battery"


class Caddy:
    def __init__(self, directory: Path) -> None:
        self.ports = {name: free_port() for name in ("n8n", "langfuse", "litellm")}
        self.dir = directory

    def url(self, site: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[site]}{path}"


@pytest.fixture(scope="module")
def caddy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Caddy]:
    program = tools.caddy()
    require(program, "caddy")
    assert program is not None
    server = Caddy(tmp_path_factory.mktemp("caddy"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(server.dir),
        "XDG_DATA_HOME": str(server.dir),
        "XDG_CONFIG_HOME": str(server.dir),
        "ACME_EMAIL": "ops@aistack.dev",
        "N8N_DOMAIN": server.url("n8n", ""),
        "LANGFUSE_DOMAIN": server.url("langfuse", ""),
        "LITELLM_DOMAIN": server.url("litellm", ""),
        "BASIC_AUTH_USER": "admin",
        "BASIC_AUTH_HASH": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode(),
    }
    log = (server.dir / "caddy.log").open("wb")
    proc = subprocess.Popen(
        [program, "run", "--config", str(REPO / "Caddyfile"), "--adapter", "caddyfile"], env=env, stdout=log, stderr=log
    )
    try:
        up = server.url("langfuse", "/")  # langfuse-web does not resolve: 502 once Caddy serves
        wait_until(lambda: proc.poll() is None and httpx.get(up, timeout=2).status_code == 502, 30, "caddy")
        yield server
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def status(url: str, method: str = "GET", auth: tuple[str, str] | None = None) -> int:
    return httpx.request(method, url, auth=auth, timeout=10).status_code


@pytest.mark.parametrize("path", ["/", "/docs", "/redoc", "/openapi.json", "/ui/", "/key/generate", "/sso/key/generate"])
def test_litellm_pages_and_admin_api_need_basic_auth(caddy: Caddy, path: str) -> None:
    """LiteLLM serves its Swagger page at / as well as /docs: neither may be public."""
    assert status(caddy.url("litellm", path)) == 401
    assert status(caddy.url("litellm", path), auth=("admin", PASSWORD)) == 503  # through to LiteLLM (no replica up)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("POST", "/chat/completions"),
        ("POST", "/embeddings"),
        ("GET", "/models"),
        ("GET", "/health/liveliness"),
        ("GET", "/health"),
    ],
)
def test_litellm_api_stays_reachable_with_its_own_keys(caddy: Caddy, method: str, path: str) -> None:
    assert status(caddy.url("litellm", path), method) == 503  # not 401: LiteLLM checks the bearer key


@pytest.mark.parametrize("path", ["/", "/signin", "/setup", "/rest/owner/setup", "/rest/login", "/rest/workflows", "/form"])
def test_n8n_editor_needs_basic_auth_before_its_owner_exists(caddy: Caddy, path: str) -> None:
    """Whoever opened the editor first would create n8n's owner: the editor is behind basic auth."""
    assert status(caddy.url("n8n", path)) == 401
    assert status(caddy.url("n8n", path), auth=("admin", PASSWORD)) == 502


@pytest.mark.parametrize(
    "path",
    [
        "/webhook/route-task",
        "/webhook-test/route-task",
        "/webhook-waiting/123",
        # the Form and MCP Server triggers are public too (n8n's endpoints config): their own auth, per workflow
        "/form/contact",
        "/form-test/contact",
        "/form-waiting/123",
        "/mcp/tools",
        "/mcp-test/tools",
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_n8n_public_triggers_stay_reachable(caddy: Caddy, path: str, method: str) -> None:
    assert status(caddy.url("n8n", path), method) == 502  # not 401: through to n8n


def test_compose_healthcheck_reaches_the_caddyfile_admin_api(caddy: Caddy) -> None:
    """The caddy service's healthcheck URL, against the admin address the Caddyfile sets (admin localhost:2019)."""
    compose = yaml.safe_load((REPO / "docker-compose.vps.yml").read_text())
    test = " ".join(compose["services"]["caddy"]["healthcheck"]["test"])
    url = re.search(r"https?://\S+", test)
    assert url is not None
    response = httpx.get(url.group(0), timeout=5)
    assert response.status_code == 200, response.text
