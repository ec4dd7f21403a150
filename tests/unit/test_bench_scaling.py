"""`ops bench scaling`: its compose project as Compose reads it, its ratios and verdict, and bad input refused."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ops.bench.scaling import Measured, Memory, ScalingBench, bench_env, check_cpusets
from ops.envfile import parse_env_text
from ops.errors import OpsError
from tests.conftest import REPO
from tests.unit.cli import run_ops


def test_the_bench_env_has_fresh_secrets_and_the_mocks_keys() -> None:
    example = (REPO / "vps.env.example").read_text()
    first, second = parse_env_text(bench_env(example)), parse_env_text(bench_env(example))
    assert first["LITELLM_MASTER_KEY"] != second["LITELLM_MASTER_KEY"]  # never the operator's own secrets
    assert first["OPENAI_API_KEY"] == "mock-openai-key" and first["COMPOSE_PROFILES"] == ""


def measured(load: str, replicas: int, cpuset: str, rps: float, p95: float) -> Measured:
    return Measured(load, replicas, cpuset, int(rps * 10), 0, 10.0, p95 / 2, p95, (int(rps * 10),))


def bench(two_rps: float, budget: int = 3424, total: int = 2272) -> ScalingBench:
    result = ScalingBench(litellm_limit_mb=448, budget_mb=budget, stack_total_mb=total)
    result.runs = [measured("c20", 1, "0", 80, 300), measured("c20", 2, "0", two_rps, 250)]
    result.runs += [measured("spike", 1, "0", 30, 3000), measured("spike", 2, "0", 31, 2900)]
    result.memory = {1: [Memory(300, 310)], 2: [Memory(290, 300), Memory(290, 298)]}
    return result


def test_ratios_are_two_replicas_against_one_per_load_and_cpu_set() -> None:
    result = bench(two_rps=120)
    assert result.ratios() == [
        {"load": "c20", "cpuset": "0", "throughput_ratio": 1.5, "p95_ratio": 0.83},
        {"load": "spike", "cpuset": "0", "throughput_ratio": 1.03, "p95_ratio": 0.97},
    ]
    assert result.added_mb == 288  # 300 + 298 at two replicas, against 310 at one
    assert result.verdict().startswith("worth it on CPU set 0: two replicas served 1.50x")


@pytest.mark.parametrize(
    ("two_rps", "budget", "why"),
    [(80, 3424, "1.00x the requests/s"), (120, 2600, "(does not fit)")],
    ids=["no throughput gain", "over the memory budget"],
)
def test_a_second_replica_is_not_worth_it_without_a_gain_or_the_memory(two_rps: float, budget: int, why: str) -> None:
    verdict = bench(two_rps, budget=budget).verdict()
    assert verdict.startswith("not worth it") and why in verdict, verdict


def test_no_verdict_without_both_replica_counts_on_the_cpu_set() -> None:
    result = bench(two_rps=120)
    assert result.verdict(cpuset="0-1").startswith("no verdict")


def test_the_text_report_names_every_run_and_the_verdict() -> None:
    text = bench(two_rps=120).text().splitlines()
    assert len([line for line in text if re.match(r"(c20|spike) +\d", line)]) == 4
    assert text[-1].startswith("worth it")


@pytest.mark.parametrize("cpuset", ["", "a", "0-", "1-0", "0,,1", "2", "0-2"])
def test_a_cpu_set_the_machine_does_not_have_is_refused(cpuset: str) -> None:
    with pytest.raises(OpsError, match="is not a set of this machine's CPUs"):
        check_cpusets((cpuset,), cpus=2)


def test_cpu_sets_the_machine_has_pass() -> None:
    check_cpusets(("0", "1", "0-1", "0,1"), cpus=2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--requests", "0"), "must be at least 1"),
        (("--seconds", "0"), "--seconds above 0"),
        (("--cpuset", "99"), "is not a set of this machine's CPUs"),
    ],
)
def test_bad_input_is_one_line_and_no_docker(args: tuple[str, ...], message: str) -> None:
    ran = run_ops("bench", "scaling", "--project-dir", str(REPO), *args)
    assert ran.returncode != 0 and message in ran.stderr and "Traceback" not in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1


def test_a_directory_without_the_compose_file_is_refused(tmp_path: Path) -> None:
    shutil.copy(REPO / "vps.env.example", tmp_path / "vps.env.example")
    ran = run_ops("bench", "scaling", "--project-dir", str(tmp_path), "--cpuset", "0")
    assert ran.returncode != 0 and "docker-compose.vps.yml not found" in ran.stderr
