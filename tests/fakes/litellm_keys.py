"""A contract fake of LiteLLM's key endpoints with its database on, as an httpx transport.

LiteLLM's virtual keys need its database and Prisma's query engine, which cannot be downloaded on
these machines (../ENVIRONMENT: "Database features ... fails here"), so `ops code`'s key path is
tested against this fake. Each answer follows LiteLLM 1.100.5's own code
(litellm/proxy/management_endpoints/key_management_endpoints.py):

* ``GET /key/info?key=K``: K the key or its SHA-256 (``_hash_token_if_needed``, proxy/utils.py); 200
  ``{"key", "info"}`` (the stored row without its token); 404
  ``{"error": {"message": "Key not found in database", ...}}`` (ProxyException, not_found_error).
* ``POST /key/generate``: 200 ``{"key", ...}`` (GenerateKeyResponse); 400 for a key without ``sk-``
  or shorter than 16 characters; 400 "Key with alias '...' already exists" (``_enforce_unique_key_alias``);
  403 when the admin disabled custom key values (``_check_custom_key_allowed``).
* ``POST /key/update``: 200 ``{"key": key, **data}`` (asked only for a key /key/info found).
* anything without the master key: 401.

It checks field names against the request models only in tests/integration/test_code_keys.py, where
LiteLLM's pydantic models are imported (a 4 s import the unit tier does not pay).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx


def token_of(key: str) -> str:
    """The row's id: a key starting with sk- is hashed (SHA-256 hex), anything else is taken as the hash."""
    # source: litellm proxy/utils.py _hash_token_if_needed, proxy/_types.py hash_token
    return hashlib.sha256(key.encode()).hexdigest() if key.startswith("sk-") else key


def _error(status: int, message: str, kind: str = "bad_request_error", param: str = "None") -> httpx.Response:
    # source: litellm proxy_server.py openai_exception_handler: {"error": ProxyException.to_dict()}
    return httpx.Response(status, json={"error": {"message": message, "type": kind, "param": param, "code": str(status)}})


@dataclass
class FakeLiteLLMKeys:
    """The key table of a LiteLLM with its database: rows by token (the key's hash), and every request received."""

    master_key: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    custom_keys_disabled: bool = False

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        body: dict[str, Any] = json.loads(request.content) if request.content else {}
        self.requests.append((request.method, request.url.path, body or dict(request.url.params)))
        if request.headers.get("Authorization") != f"Bearer {self.master_key}":
            return _error(401, "Authentication Error, Invalid proxy server token passed.", "auth_error")
        if (request.method, request.url.path) == ("GET", "/key/info"):
            row = self.rows.get(token_of(request.url.params.get("key", "")))
            if row is None:
                return _error(404, "Key not found in database", "not_found_error", "key")
            return httpx.Response(200, json={"key": request.url.params["key"], "info": row})
        if (request.method, request.url.path) == ("POST", "/key/generate"):
            return self._generate(body)
        if (request.method, request.url.path) == ("POST", "/key/update"):
            row = self.rows.get(token_of(str(body.get("key"))))
            assert row is not None, "ops code updates only a key /key/info found"
            row.update({k: v for k, v in body.items() if k != "key"})
            return httpx.Response(200, json={"key": body["key"], **row})
        return httpx.Response(404, json={"detail": "Not Found"})

    def _generate(self, body: dict[str, Any]) -> httpx.Response:
        alias = body.get("key_alias")
        if alias is not None and any(r.get("key_alias") == alias for r in self.rows.values()):
            return _error(400, f"Key with alias '{alias}' already exists. Unique key aliases across all keys are required.")
        key = body.get("key")
        if key is not None and self.custom_keys_disabled:
            # an HTTPException's detail dict becomes ProxyException's message as str() (handle_exception_on_proxy)
            detail = {"error": "Custom API key values are disabled by your administrator. Keys must be auto-generated."}
            return _error(403, str(detail), "internal_server_error")
        if key is not None and (not str(key).startswith("sk-") or len(str(key)) < 16):
            return _error(
                400, str({"error": "Invalid key format. LiteLLM Virtual Key must start with 'sk-'."}), "internal_server_error"
            )
        key = str(key or "sk-generated-0123456789")
        self.rows[token_of(key)] = {k: v for k, v in body.items() if k != "key"} | {"spend": 0.0}
        return httpx.Response(200, json={"key": key, **self.rows[token_of(key)]})
