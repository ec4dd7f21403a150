"""HTTP readiness probes: one GET, within the timeout, at a service's address or through Caddy by its public name.

A public name (N8N_DOMAIN, LANGFUSE_DOMAIN, LITELLM_DOMAIN) is asked for at
Caddy's address on this machine (OPS_CADDY_URL, its published 443) with the
name as the TLS server name and the Host header, and the certificate is
verified for that name: no DNS lookup and no trip out through the VM's
public address and back (docs/HEALTH.md).
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from ops.config import Settings, check_url, redact_url
from ops.health.base import Down, ProbeResult, measure, one_line

_trust_lock = threading.Lock()
_trust: dict[tuple[str, str], ssl.SSLContext] = {}


@dataclass(frozen=True)
class Endpoint:
    """Where a service is asked: a base URL and, through Caddy, the public name asked for there."""

    url: str
    name: str = ""  # the Host header and the TLS server name; empty: the URL's own host
    auth: tuple[str, str] | None = None  # basic auth (Caddy's, in front of n8n's editor and health paths)

    @property
    def where(self) -> str:
        """Return the address fit for a line: the URL's password as *** (the line goes to alerts), or the name at
        Caddy's host and port."""
        if not self.name:
            return redact_url(self.url)
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{self.name} at {parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def url_endpoint(settings: Settings, name: str, default: str) -> Endpoint:
    """Given an OPS_*_URL variable, return its URL (default when empty) as an Endpoint.

    Raise ConfigError naming the variable if it is not an http(s) URL (default is the example shown).
    """
    url = (settings.effective_env.get(name) or default).rstrip("/")
    check_url(name, url, ("http", "https"), default)
    return Endpoint(url)


def through_caddy(settings: Settings, name: str, auth: tuple[str, str] | None = None) -> Endpoint:
    """Given a public name, return it as an Endpoint at Caddy's address. Raise ConfigError on a bad OPS_CADDY_URL."""
    return Endpoint(settings.caddy_url, name, auth)


def trust() -> ssl.SSLContext:
    """Return the TLS context the probes verify certificates with: httpx's (SSL_CERT_FILE, SSL_CERT_DIR, else certifi).

    Made once per process and trust setting, not per probe: loading the CA bundle costs about 50 ms of CPU,
    which five probes at once paid over again in each other's latency. (The environment is read here only as
    the key of what httpx itself reads.)
    """
    key = (os.environ.get("SSL_CERT_FILE", ""), os.environ.get("SSL_CERT_DIR", ""))
    with _trust_lock:
        if key not in _trust:
            _trust[key] = httpx.create_ssl_context()
        return _trust[key]


def get(endpoint: Endpoint, path: str, timeout: float, context: ssl.SSLContext) -> httpx.Response:
    """GET path at endpoint, verifying with context; return the response. Raise Down naming the address if none
    comes within timeout."""
    headers = {"Host": endpoint.name} if endpoint.name else {}
    # httpcore's request extension: the TLS server name (and the name the certificate is verified for)
    extensions = {"sni_hostname": endpoint.name} if endpoint.name and endpoint.url.startswith("https:") else {}
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, verify=context) as client:
            return client.get(endpoint.url + path, headers=headers, auth=endpoint.auth, extensions=extensions)
    except httpx.TimeoutException:
        raise Down(f"no answer within {timeout:g} s from {endpoint.where}") from None
    except httpx.ConnectError as exc:
        raise Down(f"cannot connect to {endpoint.where}: {one_line(str(exc))}") from None
    except httpx.HTTPError as exc:
        raise Down(f"{endpoint.where}: {type(exc).__name__}: {one_line(str(exc))}") from None


def probe_ready(
    name: str, endpoint: Endpoint, path: str, timeout: float, answer: Callable[[httpx.Response], bool]
) -> ProbeResult:
    """GET path at endpoint, timed; ok if it answers 200 and answer(response) holds, else down saying what came."""
    context = trust()  # before the clock starts: loading certificates is this machine's work, not the service's

    def exchange() -> str:
        response = get(endpoint, path, timeout, context)
        said = one_line(response.text, 120)
        if response.status_code != 200:
            raise Down(f"HTTP {response.status_code} from {endpoint.where}{path}: {said}")
        if not answer(response):
            raise Down(f"HTTP 200 from {endpoint.where}{path}, but not the service's ready answer: {said}")
        return f"ready ({endpoint.where}{path}: {said})"

    return measure(name, exchange)


def json_status(expected: str) -> Callable[[httpx.Response], bool]:
    """Return a check that the response is JSON whose "status" is expected."""

    def check(response: httpx.Response) -> bool:
        try:
            body = response.json()
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("status") == expected

    return check
