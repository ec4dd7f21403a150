"""The gateway benchmark's comparisons: ratios and target verdicts from measured runs."""

from ops.bench.gateway import GatewayBench, Run
from ops.bench.load import LoadResult


def result(throughput: float, p50: float, errors: int = 0) -> LoadResult:
    return LoadResult(requests=int(throughput * 10), errors=errors, seconds=10.0, latencies_ms=[p50] * 5)


def test_comparisons_against_direct_at_the_same_concurrency() -> None:
    bench = GatewayBench(50, 1000, limit_mb=512)
    bench.runs = [
        Run("direct", 20, result(400, 52)),
        Run("direct", 100, result(1600, 60)),
        Run("gateway-shipped", 20, result(200, 80), peak_mb=300),
        Run("gateway-shipped", 100, result(300, 400, errors=2), peak_mb=600),
    ]
    at20, at100 = bench.comparisons()
    assert (at20["throughput_ratio"], at20["added_p50_ms"]) == (0.5, 28.0)
    assert at20["meets_throughput_target"] and at20["meets_latency_target"] and at20["meets_memory_target"]
    assert not at100["meets_error_target"] and not at100["meets_memory_target"]
    assert at100["meets_throughput_target"]  # the throughput and latency targets are set at concurrency 20 only


def test_just_under_half_the_direct_rate_misses() -> None:
    bench = GatewayBench(50, 1000, limit_mb=None)
    bench.runs = [Run("direct", 20, result(400, 50)), Run("gateway-minimal", 20, result(199, 81), peak_mb=100)]
    (row,) = bench.comparisons()
    assert not row["meets_throughput_target"] and not row["meets_latency_target"] and row["meets_memory_target"]
