"""Stand-in upstreams for the Caddy tests (tests/stack/test_caddy_on_docker.py), run as containers.

``--name n8n``: stands in for n8n, which has no stand-in image here: every
request gets 200 and a JSON body naming the service, the method and the path,
so a test knows the request went through Caddy to this upstream.

Every instance also speaks OpenAI's streamed chat completion (``POST
.../chat/completions`` with ``"stream": true``) with a hold: it sends its
first ``HELD`` content chunks, then waits for ``POST /__release`` before the
rest and ``data: [DONE]``. A client that reads those first chunks while the
stream is still open proves that nothing between it and here buffers the
answer.

It does not check keys, models, or any other field of the body; it has no
non-streamed completion.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aiohttp import web

NAME = web.AppKey("name", str)
RELEASE = web.AppKey("release", asyncio.Event)
HELD = ("one ", "two ", "three ")  # sent before the hold
REST = ("four",)
HOLD_LIMIT = 120  # seconds: a test that never releases does not hang the container forever


async def echo(request: web.Request) -> web.Response:
    return web.json_response({"upstream": request.app[NAME], "method": request.method, "path": request.path})


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not body.get("stream"):
        return await echo(request)

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {
            "id": "chatcmpl-held",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body.get("model", ""),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(event({"role": "assistant", "content": ""}))
    for piece in HELD:
        await response.write(event({"content": piece}))
    await asyncio.wait_for(request.app[RELEASE].wait(), HOLD_LIMIT)
    for piece in REST:
        await response.write(event({"content": piece}))
    await response.write(event({}, "stop"))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def release(request: web.Request) -> web.Response:
    request.app[RELEASE].set()
    return web.json_response({"released": True})


def make_app(name: str) -> web.Application:
    """Given the service's name, return the stand-in's aiohttp application."""
    app = web.Application()
    app[NAME] = name
    app[RELEASE] = asyncio.Event()
    app.router.add_post("/__release", release)
    app.router.add_post(r"/{prefix:.*}chat/completions", chat)
    app.router.add_route("*", r"/{path:.*}", echo)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="A stand-in upstream for the Caddy tests")
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    web.run_app(make_app(args.name), host="0.0.0.0", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
