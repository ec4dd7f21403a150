"""Stream stdin as a multipart file upload: ``python -m ops.backup.upload URL``.

A pipeline stage for restores into HTTP APIs (Qdrant's snapshot upload):
nothing is buffered whole. Request headers (an API key) come from the
environment variable OPS_UPLOAD_HEADERS, one ``Name: value`` a line, never
from the command line, which any user on the machine can read (``ps``).
Exits 1 with the server's answer on stderr when the upload is refused.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator

import httpx

FIELD = "snapshot"
HEADERS_ENV = "OPS_UPLOAD_HEADERS"


def body(boundary: str) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{FIELD}"; filename="{FIELD}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    while chunk := sys.stdin.buffer.read(1 << 20):
        yield chunk
    yield f"\r\n--{boundary}--\r\n".encode()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: python -m ops.backup.upload URL (headers in ${HEADERS_ENV})", file=sys.stderr)
        return 2
    boundary = uuid.uuid4().hex
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    for header in os.environ.get(HEADERS_ENV, "").splitlines():
        key, _, value = header.partition(":")
        if key.strip():
            headers[key.strip()] = value.strip()
    try:
        response = httpx.post(argv[0], content=body(boundary), headers=headers, timeout=httpx.Timeout(600, connect=10))
    except httpx.HTTPError as exc:
        print(f"upload to {argv[0]} failed: {exc}", file=sys.stderr)
        return 1
    if response.status_code >= 300:
        print(f"upload to {argv[0]} answered {response.status_code}: {response.text[:300]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
