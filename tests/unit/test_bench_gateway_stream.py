"""`ops bench gateway --stream` hands the flag to the bench and says so in its report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import ops.bench.gateway
from ops.bench.gateway import GatewayBench
from ops.cli import main
from ops.output import gateway_bench_text

REPO = Path(__file__).resolve().parents[2]


def test_the_stream_flag_reaches_the_bench_and_its_report(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_bench(*args: Any, **kwargs: Any) -> GatewayBench:
        seen.update(kwargs)
        return GatewayBench(50, 10, None, stream=kwargs["stream"])

    monkeypatch.setattr(ops.bench.gateway, "run_gateway_bench", fake_bench)
    result = CliRunner().invoke(main, ["bench", "gateway", "--project-dir", str(REPO), "--stream", "--json"])
    assert result.exit_code == 0, result.output
    assert seen["stream"] is True
    assert '"streamed": true' in result.output
    assert "every request streamed" in gateway_bench_text(GatewayBench(50, 10, None, stream=True))
    assert "streamed" not in gateway_bench_text(GatewayBench(50, 10, None))
