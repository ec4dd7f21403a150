"""The gateway benchmark's CPU per request: ratios to the minimal configuration, the paired run, extra configs."""

from pathlib import Path

import httpx
import pytest

from ops.bench.gateway import GatewayBench, Paired, Run, langfuse_sink, parse_configs
from ops.bench.load import LoadResult
from ops.errors import OpsError
from ops.output import gateway_bench_text


def result(throughput: float, p50: float) -> LoadResult:
    return LoadResult(requests=int(throughput * 10), errors=0, seconds=10.0, latencies_ms=[p50] * 5)


def test_cpu_per_request_is_compared_with_the_minimal_configuration() -> None:
    bench = GatewayBench(50, 1000, limit_mb=448)
    bench.runs = [
        Run("direct", 20, result(400, 52)),
        Run("gateway-shipped", 20, result(100, 200), peak_mb=330, cpu_ms=12.5),
        Run("gateway-minimal", 20, result(120, 150), peak_mb=300, cpu_ms=10.0),
    ]
    bench.paired = [Paired("gateway-shipped", result(100, 200), 11.0), Paired("gateway-minimal", result(100, 150), 8.8)]
    shipped, minimal = bench.comparisons()
    assert (shipped["cpu_ms_per_request"], shipped["cpu_ratio_to_minimal"]) == (12.5, 1.25)
    assert minimal["cpu_ratio_to_minimal"] == 1.0
    paired = bench.to_dict()["paired"]
    assert [(p["target"], p["cpu_ratio_to_minimal"]) for p in paired] == [("gateway-shipped", 1.25), ("gateway-minimal", 1.0)]
    text = gateway_bench_text(bench)
    assert (
        "1.25x the minimal's CPU/request" in text
        and "gateway-shipped           11.00 ms CPU/request (1.25x the minimal's)" in text
    )


def test_extra_configs_are_name_equals_path(tmp_path: Path) -> None:
    config = tmp_path / "before.yaml"
    config.write_text("model_list: []\n")
    assert parse_configs((f"before={config}",)) == {"before": config}
    with pytest.raises(OpsError, match="--config takes NAME=PATH"):
        parse_configs((str(config),))
    with pytest.raises(OpsError, match="is not a file"):
        parse_configs((f"before={tmp_path / 'missing.yaml'}",))


def test_the_langfuse_sink_accepts_every_event_with_207() -> None:
    with langfuse_sink() as url:
        batch = {"batch": [{"id": "a", "type": "trace-create"}, {"id": "b", "type": "generation-create"}]}
        answer = httpx.post(f"{url}/api/public/ingestion", json=batch, auth=("pk", "sk"), timeout=5)
    assert answer.status_code == 207
    assert answer.json() == {"successes": [{"id": "a", "status": 201}, {"id": "b", "status": 201}], "errors": []}
