"""The streaming pipeline: bytes arrive intact, and any failed stage fails the whole stream."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from ops.backup.pipeline import Command, PipelineError, stream

DATA = bytes(range(256)) * 40_000  # ~10 MB


def test_bytes_pass_through_every_stage_unchanged() -> None:
    received = bytearray()
    result = stream(lambda: iter([DATA[:5], DATA[5:]]), [Command(("cat",)), Command(("cat",))], received.extend)
    assert bytes(received) == DATA
    assert result.size == len(DATA) and result.sha256 == hashlib.sha256(DATA).hexdigest()


def test_a_failing_middle_stage_is_named() -> None:
    with pytest.raises(PipelineError, match=r"sh exited with status 3: broken"):
        stream(Command(("printf", "abc")), [Command(("sh", "-c", "cat >/dev/null; echo broken >&2; exit 3")), Command(("cat",))])


def test_a_producer_killed_mid_stream_fails_even_though_the_rest_saw_a_clean_eof() -> None:
    producer = Command(("sh", "-c", "head -c 100000 /dev/zero; kill -9 $$"))
    with pytest.raises(PipelineError, match="killed by signal 9"):
        stream(producer, [Command(("gzip", "-c"))])


def test_a_python_producer_that_raises_is_the_reported_cause() -> None:
    def produce() -> Iterator[bytes]:
        yield b"x" * 1000
        raise ValueError("download cut off")

    with pytest.raises(PipelineError, match="reading the input failed: download cut off"):
        stream(produce, [Command(("cat",))])


def test_a_failing_sink_stops_the_stages() -> None:
    def sink(chunk: bytes) -> None:
        raise OSError("upload refused")

    with pytest.raises(PipelineError, match="writing the stream failed: upload refused"):
        stream(Command(("cat", "/dev/zero")), [Command(("cat",))], sink)


def test_a_missing_program_is_named() -> None:
    with pytest.raises(PipelineError, match="cannot start no-such-program"):
        stream(Command(("no-such-program",)), [])
