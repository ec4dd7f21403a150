"""A contract fake of Qdrant's collection snapshot API (v1.15), for the backup tests.

Speaks, with the ``api-key`` header (401 when missing or wrong):
``GET /collections``, ``PUT /collections/{c}/points`` (upsert, to seed data),
``GET /collections/{c}/points`` (fake-only: the points, to compare),
``POST /collections/{c}/snapshots`` (SnapshotDescription: name, creation_time,
size, checksum = sha256), ``GET /collections/{c}/snapshots``,
``GET .../snapshots/{name}`` (the file), ``DELETE .../snapshots/{name}``,
``POST /collections/{c}/snapshots/upload?priority=snapshot`` (multipart
field ``snapshot``; creates or replaces the collection), and ``GET /readyz``
without the key (200 "all shards are ready", 503 "some shards are not ready"
while ``QdrantState.ready`` is False; source: qdrant/qdrant v1.15.4
src/actix/api/service_api.rs readyz, src/actix/mod.rs api_key_whitelist).

Refuses, with Qdrant's error body ``{"status": {"error": ...}, "time": ...}``
(source: qdrant/qdrant lib/api/src/rest/models.rs ApiResponse/ApiStatus, and
lib/storage/src/content_manager/errors.rs + collections_ops.rs for the
message): a missing collection, 404 "Not found: Collection `x` doesn't
exist!", on every per-collection route but upsert; a missing snapshot, 404;
an upload that is not a snapshot, 400. ``QdrantState.bad_checksum`` makes
the snapshot descriptions report a checksum the file does not have, as a
snapshot corrupted on Qdrant's disk would (tests/integration/test_fakes_contract.py).

Does not check: vectors' size, distance, index and search; collection
creation (``PUT /collections/{c}``): an upsert into a missing collection
creates it, where the real one answers 404; shard and full-storage
snapshots; snapshot recovery from a URL (PUT .../snapshots/recover);
priorities other than "snapshot"; ``wait``; and the real snapshot's internal
layout (a tar holding the points as JSON stands in for it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class QdrantState:
    api_key: str
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {point id: payload}
    snapshots: dict[tuple[str, str], bytes] = field(default_factory=dict)
    uploads: int = 0
    bad_checksum: bool = False  # descriptions report a checksum the snapshot file does not have
    ready: bool = True  # /readyz: all shards ready


def _ok(result: Any) -> web.Response:
    return web.json_response({"result": result, "status": "ok", "time": 0.001})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"status": {"error": message}, "time": 0.0}, status=status)


def _missing(name: str) -> web.Response:
    return _error(404, f"Not found: Collection `{name}` doesn't exist!")


def _pack(points: dict[str, Any]) -> bytes:
    data = json.dumps(points, sort_keys=True).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("points.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _unpack(blob: bytes) -> dict[str, Any]:
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        member = tar.extractfile("points.json")
        if member is None:
            raise ValueError("no points.json")
        points: dict[str, Any] = json.loads(member.read())
        return points


def qdrant_app(state: QdrantState) -> web.Application:
    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/readyz" and request.headers.get("api-key") != state.api_key:
            return _error(401, "Must provide a valid API key")
        response: web.StreamResponse = await handler(request)
        return response

    async def readyz(request: web.Request) -> web.Response:
        if state.ready:
            return web.Response(text="all shards are ready")
        return web.Response(status=503, text="some shards are not ready")

    async def list_collections(request: web.Request) -> web.Response:
        return _ok({"collections": [{"name": n} for n in sorted(state.collections)]})

    async def upsert(request: web.Request) -> web.Response:
        body = await request.json()
        points = state.collections.setdefault(request.match_info["c"], {})
        for point in body["points"]:
            points[str(point["id"])] = {"vector": point.get("vector"), "payload": point.get("payload", {})}
        return _ok({"operation_id": 1, "status": "completed"})

    async def points(request: web.Request) -> web.Response:
        name = request.match_info["c"]
        if name not in state.collections:
            return _missing(name)
        return _ok(state.collections[name])

    async def create_snapshot(request: web.Request) -> web.Response:
        name = request.match_info["c"]
        if name not in state.collections:
            return _missing(name)
        blob = _pack(state.collections[name])
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        snap = f"{name}-{now.strftime('%Y-%m-%d-%H-%M-%S-%f')}.snapshot"
        state.snapshots[(name, snap)] = blob
        return _ok(_describe(snap, blob, now, state.bad_checksum))

    async def list_snapshots(request: web.Request) -> web.Response:
        name = request.match_info["c"]
        if name not in state.collections:
            return _missing(name)
        return _ok([_describe(s, b, None, state.bad_checksum) for (c, s), b in state.snapshots.items() if c == name])

    async def download(request: web.Request) -> web.StreamResponse:
        key = (request.match_info["c"], request.match_info["s"])
        if key[0] not in state.collections:
            return _missing(key[0])
        if key not in state.snapshots:
            return _error(404, f"Not found: Snapshot {key[1]} not found")
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        blob = state.snapshots[key]
        for start in range(0, len(blob), 65536):
            await response.write(blob[start : start + 65536])
        await response.write_eof()
        return response

    async def delete(request: web.Request) -> web.Response:
        key = (request.match_info["c"], request.match_info["s"])
        if key[0] not in state.collections:
            return _missing(key[0])
        if state.snapshots.pop(key, None) is None:
            return _error(404, f"Not found: Snapshot {key[1]} not found")
        return _ok(True)

    async def upload(request: web.Request) -> web.Response:
        if request.query.get("priority") != "snapshot":
            return _error(400, "the fake supports priority=snapshot only")
        reader = await request.multipart()
        part = await reader.next()
        if part is None or getattr(part, "name", None) != "snapshot":
            return _error(400, "multipart field `snapshot` is required")
        blob = await part.read()  # type: ignore[union-attr]
        try:
            state.collections[request.match_info["c"]] = _unpack(bytes(blob))
        except (tarfile.TarError, ValueError, KeyError) as exc:
            return _error(400, f"Wrong input: not a snapshot: {exc}")
        state.uploads += 1
        return _ok(True)

    app = web.Application(middlewares=[auth], client_max_size=1 << 30)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/collections", list_collections)
    app.router.add_put("/collections/{c}/points", upsert)
    app.router.add_get("/collections/{c}/points", points)
    app.router.add_post("/collections/{c}/snapshots", create_snapshot)
    app.router.add_get("/collections/{c}/snapshots", list_snapshots)
    app.router.add_post("/collections/{c}/snapshots/upload", upload)
    app.router.add_get("/collections/{c}/snapshots/{s}", download)
    app.router.add_delete("/collections/{c}/snapshots/{s}", delete)
    return app


def _describe(name: str, blob: bytes, when: dt.datetime | None, bad_checksum: bool = False) -> dict[str, Any]:
    checksum = hashlib.sha256(blob + b"corrupted" if bad_checksum else blob).hexdigest()
    return {
        "name": name,
        "creation_time": when.isoformat(timespec="seconds") if when else None,
        "size": len(blob),
        "checksum": checksum,
    }


def main() -> None:
    """Serve the fake on 0.0.0.0:PORT with QDRANT__SERVICE__API_KEY (as the real image reads it), seeded (stack tier)."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Qdrant snapshot API contract fake")
    parser.add_argument("--port", type=int, default=6333)
    parser.add_argument("--seed", type=int, default=0, help="Points in a collection named memories.")
    args = parser.parse_args()
    state = QdrantState(api_key=os.environ["QDRANT__SERVICE__API_KEY"])
    if args.seed:
        state.collections["memories"] = {str(i): {"vector": [i / 10, 0.5], "payload": {"n": i}} for i in range(args.seed)}
    web.run_app(qdrant_app(state), host="0.0.0.0", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
