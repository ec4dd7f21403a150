"""Qdrant: one snapshot per collection through its snapshot API, streamed down, then deleted on the server.

The download is checked against the checksum Qdrant reports for the
snapshot. A restore uploads the snapshot (priority "snapshot") into the
collection itself (live) or into ``<name>_restored`` (scratch).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from typing import Any

import httpx

from ops.backup import upload
from ops.backup.context import BackupContext
from ops.backup.manifest import Entry
from ops.backup.pipeline import Command
from ops.backup.sources.base import Emit, Feed
from ops.errors import OpsError, ServiceError

NAME = "qdrant"
SCHEDULE = "daily"
TIMEOUT = httpx.Timeout(600, connect=10)


def _client(ctx: BackupContext) -> httpx.Client:
    headers = {"api-key": ctx.qdrant_api_key} if ctx.qdrant_api_key else {}
    return httpx.Client(base_url=ctx.qdrant_url, headers=headers, timeout=TIMEOUT)


def _result(response: httpx.Response, what: str) -> Any:
    if response.status_code == 401 or response.status_code == 403:
        raise ServiceError(f"Qdrant refused {what}: wrong QDRANT_API_KEY ({response.status_code})")
    if response.status_code >= 400:
        raise ServiceError(f"Qdrant {what} failed with {response.status_code}: {response.text[:300]}")
    return response.json().get("result")


def collections(ctx: BackupContext) -> list[str]:
    try:
        with _client(ctx) as client:
            result = _result(client.get("/collections"), "listing collections")
    except httpx.HTTPError as exc:
        raise ServiceError(f"cannot reach Qdrant at {ctx.qdrant_url}: {exc}") from exc
    return sorted(c["name"] for c in result["collections"])


def backup(ctx: BackupContext, emit: Emit) -> None:
    for name in collections(ctx):
        with _client(ctx) as client:
            snapshot = _result(client.post(f"/collections/{name}/snapshots", params={"wait": "true"}), f"snapshot of {name}")
            path = f"/collections/{name}/snapshots/{snapshot['name']}"

            def download(path: str = path, expected: str | None = snapshot.get("checksum")) -> Iterator[bytes]:
                digest = hashlib.sha256()
                with client.stream("GET", path) as response:
                    if response.status_code != 200:
                        raise ServiceError(f"downloading Qdrant snapshot {path} failed with {response.status_code}")
                    for chunk in response.iter_bytes(1 << 20):
                        digest.update(chunk)
                        yield chunk
                if expected and digest.hexdigest() != expected:
                    raise OpsError(f"Qdrant snapshot {path}: sha256 {digest.hexdigest()} differs from Qdrant's {expected}")

            try:
                emit(f"{name}.snapshot", download, {"collection": name, "snapshot": snapshot["name"]})
            finally:
                client.delete(path)  # snapshots fill the VM's disk if left behind


def restore(ctx: BackupContext, entry: Entry, into: str, feed: Feed) -> str:
    """Upload the snapshot into the collection (live) or into <name>_restored (scratch)."""
    collection = entry.meta["collection"] + ("_restored" if into == "scratch" else "")
    # the API key goes in the stage's environment, never on its command line (`ps` shows those to every user)
    headers = ((upload.HEADERS_ENV, f"api-key: {ctx.qdrant_api_key}"),) if ctx.qdrant_api_key else ()
    url = f"{ctx.qdrant_url}/collections/{collection}/snapshots/upload?priority=snapshot&wait=true"
    # the decoded stream goes straight into a streaming multipart upload (ops.backup.upload reads stdin)
    feed(Command((sys.executable, "-m", "ops.backup.upload", url), headers))
    return f"collection {entry.meta['collection']} restored into {collection}"
