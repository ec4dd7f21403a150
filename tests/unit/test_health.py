"""`ops health`'s runner and decisions: parallel probes, a hung one cut at its timeout, the verdict, --json, addresses.

The probes here are tiny in-test ones; the real probes ask real services in tests/integration/test_health.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops.config import Settings
from ops.envfile import read_env_file
from ops.errors import ConfigError
from ops.health import ProbeResult, health_text, run_health
from ops.health.base import Down, measure, skipped
from ops.health.probes import PROBES, caddy, langfuse, n8n, observer
from tests.conftest import REPO
from tests.unit.cli import run_ops


@dataclass
class TinyProbe:
    """A probe whose exchange is a function: it returns what it saw or raises Down."""

    NAME: str
    exchange: Callable[[], str]

    def probe(self, settings: Settings, timeout: float) -> ProbeResult:
        return measure(self.NAME, self.exchange)


def settings_with(tmp_path: Path, **env: str) -> Settings:
    return Settings(tmp_path, env=dict(env), example_env=read_env_file(REPO / "vps.env.example"), env_file_present=True)


@pytest.fixture
def released() -> Iterator[threading.Event]:
    """An event a hung probe waits on; set when the test ends, so no thread outlives it."""
    event = threading.Event()
    yield event
    event.set()


def up(name: str) -> TinyProbe:
    return TinyProbe(name, lambda: "fine")


def down(name: str, why: str) -> TinyProbe:
    def exchange() -> str:
        raise Down(why)

    return TinyProbe(name, exchange)


def test_probes_run_at_the_same_time(tmp_path: Path) -> None:
    # each probe waits for all three to have started: one after the other, the first would wait in vain
    barrier = threading.Barrier(3, timeout=20)

    def meet() -> str:
        barrier.wait()
        return "met the others"

    report = run_health(settings_with(tmp_path), timeout=30, probes=[TinyProbe(n, meet) for n in ("a", "b", "c")])

    assert [(r.name, r.ok, r.detail) for r in report.results] == [(n, True, "met the others") for n in ("a", "b", "c")]


@pytest.mark.timeout(60)
def test_a_hung_probe_is_down_at_its_timeout_and_the_others_answer(tmp_path: Path, released: threading.Event) -> None:
    def hang() -> str:
        released.wait()  # never set while run_health runs: only the runner's deadline ends this probe's turn
        return "too late"

    report = run_health(settings_with(tmp_path), timeout=0.3, probes=[up("fast"), TinyProbe("stuck", hang), up("also")])

    assert not report.ok
    assert report.down == ["stuck"]
    stuck = report.results[1]
    assert (stuck.name, stuck.ok, stuck.detail) == ("stuck", False, "no answer within 0.3 s")
    assert [r.ok for r in report.results] == [True, False, True]


def test_the_report_is_ok_only_when_every_probe_is_and_skipped_ones_count_as_ok(tmp_path: Path) -> None:
    quiet = TinyProbe("quiet", lambda: "unused")
    skipping = type("Skipping", (), {"NAME": "optional", "probe": staticmethod(lambda s, t: skipped("optional", "off"))})()
    settings = settings_with(tmp_path)

    assert run_health(settings, probes=[up("a"), skipping]).ok
    report = run_health(settings, probes=[up("a"), down("b", "refused"), quiet, down("c", "gone")])
    assert not report.ok
    assert report.down == ["b", "c"]
    assert report.results[1].detail == "refused"


def test_a_probe_that_crashes_or_lacks_a_setting_is_down_and_says_why(tmp_path: Path) -> None:
    class Crashing:
        NAME = "crashing"

        def probe(self, settings: Settings, timeout: float) -> ProbeResult:
            raise KeyError("boom")

    class Misconfigured:
        NAME = "misconfigured"

        def probe(self, settings: Settings, timeout: float) -> ProbeResult:
            raise ConfigError("OPS_SOMETHING_URL is malformed")

    report = run_health(settings_with(tmp_path), probes=[Crashing(), Misconfigured(), up("fine")])

    assert report.down == ["crashing", "misconfigured"]
    assert report.results[0].detail == "the probe failed: KeyError: 'boom'"
    assert report.results[1].detail == "OPS_SOMETHING_URL is malformed"
    assert report.results[2].ok


def test_only_picks_services_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    probes = [up("a"), down("b", "x"), up("c")]

    assert [r.name for r in run_health(settings, only=("c", "a"), probes=probes).results] == ["a", "c"]
    with pytest.raises(ConfigError, match="no health probe for nope: the services are a, b, c"):
        run_health(settings, only=("nope",), probes=probes)
    with pytest.raises(ConfigError, match="more than 0 s"):
        run_health(settings, timeout=0, probes=probes)


def test_without_vps_env_nothing_is_probed(tmp_path: Path) -> None:
    settings = Settings(tmp_path, example_env=read_env_file(REPO / "vps.env.example"), env_file_present=False)
    with pytest.raises(ConfigError, match=r"vps\.env not found"):
        run_health(settings, probes=[up("a")])


def test_the_text_has_a_line_a_service_and_names_what_is_down(tmp_path: Path) -> None:
    report = run_health(settings_with(tmp_path), probes=[up("redis"), down("postgres", "cannot connect to 127.0.0.1:5432")])
    lines = health_text(report).splitlines()

    assert lines[0].split()[:2] == ["redis", "ok"]
    assert lines[1].split()[:2] == ["postgres", "DOWN"]
    assert lines[1].endswith("cannot connect to 127.0.0.1:5432")
    assert lines[-1].startswith("DOWN: postgres (1 up")


@pytest.fixture
def project_with_env(tmp_path: Path) -> Path:
    (tmp_path / "vps.env.example").write_text((REPO / "vps.env.example").read_text())
    (tmp_path / "vps.env").write_text("REDIS_PASSWORD=x\n")
    return tmp_path


def test_the_cli_exits_1_naming_what_is_down_and_0_when_all_answer(
    project_with_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ops.health.probes.PROBES", (up("caddy"), down("redis", "refused the password")))
    ran = run_ops("health", "--project-dir", str(project_with_env))
    assert ran.returncode == 1
    assert "DOWN: redis" in ran.stdout

    monkeypatch.setattr("ops.health.probes.PROBES", (up("caddy"), up("redis")))
    ran = run_ops("health", "--project-dir", str(project_with_env))
    assert ran.returncode == 0
    assert ran.stdout.splitlines()[-1].startswith("OK: 2 up")

    ran = run_ops("health", "--project-dir", str(project_with_env), "--only", "n8n")
    assert ran.returncode == 2
    assert ran.stderr.startswith("error: no health probe for n8n")


def test_the_cli_json_has_the_verdict_and_one_entry_a_service(project_with_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ops.health.probes.PROBES", (up("caddy"), down("redis", "refused")))
    ran = run_ops("health", "--project-dir", str(project_with_env), "--json", "--timeout", "2")
    data = json.loads(ran.stdout)

    assert ran.returncode == 1
    assert set(data) == {"ok", "down", "timeout_s", "elapsed_ms", "results"}
    assert (data["ok"], data["down"], data["timeout_s"]) == (False, ["redis"], 2.0)
    assert [set(r) for r in data["results"]] == [{"name", "ok", "skipped", "latency_ms", "detail"}] * 2
    assert [(r["name"], r["ok"], r["detail"]) for r in data["results"]] == [("caddy", True, "fine"), ("redis", False, "refused")]


def test_the_registry_probes_every_service_of_the_stack_once() -> None:
    from ops.stack import load_stack

    names = [p.NAME for p in PROBES]
    assert len(names) == len(set(names))
    services = {s.name for s in load_stack(REPO / "docker-compose.vps.yml").services}
    # every long-running service; of the langfuse profile only the web (its worker and ClickHouse publish
    # nothing ops could ask: their compose healthchecks watch them; docs/HEALTH.md)
    long_running = services - {"postgres-init", "clickhouse", "langfuse-worker", "langfuse-web"}
    assert set(names) == long_running | {"langfuse"}


def test_public_names_are_asked_for_at_caddys_loopback_port_with_the_name(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path, N8N_DOMAIN="n8n.example.org", LITELLM_DOMAIN="llm.example.org", BASIC_AUTH_PASSWORD="pw", OPS_N8N_URL=""
    )

    at_caddy = caddy.endpoint(settings)
    assert (at_caddy.url, at_caddy.name, at_caddy.auth) == ("https://127.0.0.1", "llm.example.org", None)
    at_n8n = n8n.endpoint(settings)
    assert (at_n8n.url, at_n8n.name, at_n8n.auth) == ("https://127.0.0.1", "n8n.example.org", ("admin", "pw"))
    assert at_n8n.where == "https://n8n.example.org at 127.0.0.1:443"
    # OPS_N8N_URL asks n8n directly, without Caddy's login
    direct = n8n.endpoint(settings_with(tmp_path, OPS_N8N_URL="http://n8n:5678/"))
    assert (direct.url, direct.name, direct.auth) == ("http://n8n:5678", "", None)


def test_langfuse_and_the_observer_are_skipped_when_not_part_of_the_stack(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, LANGFUSE_DOMAIN="", OPS_LANGFUSE_URL="", COMPOSE_PROFILES="")

    assert langfuse.endpoint(settings) is None
    assert langfuse.probe(settings, 1).skipped
    result = observer.probe(settings, 1)
    assert (result.ok, result.skipped) == (True, True)
    assert "events profile is off" in result.detail
    through = langfuse.endpoint(settings_with(tmp_path, LANGFUSE_DOMAIN="lf.example.org"))
    assert through is not None and (through.url, through.name) == ("https://127.0.0.1", "lf.example.org")


def test_a_malformed_caddy_url_is_that_lines_problem_naming_the_variable(tmp_path: Path) -> None:
    report = run_health(settings_with(tmp_path, OPS_CADDY_URL="ftp://127.0.0.1"), only=("caddy",))

    assert report.down == ["caddy"]
    assert report.results[0].detail.startswith("OPS_CADDY_URL must start with http:// or https://")


def test_a_password_in_a_services_url_is_in_no_line_nor_the_json(tmp_path: Path) -> None:
    # these lines go to the cron log, alert e-mails and Telegram (ops/alerts/check.py): port 1 refuses at once
    at = "http://admin:s3cret-pw@127.0.0.1:1"
    settings = settings_with(
        tmp_path,
        OPS_N8N_URL=at,
        OPS_GATEWAY_URL=at,
        OPS_QDRANT_URL=at,
        OPS_LANGFUSE_URL=at,
        OPS_CADDY_URL=at.replace("http", "https"),
    )
    report = run_health(settings, timeout=10, only=("caddy", "litellm", "n8n", "langfuse", "qdrant"))

    assert report.down == ["caddy", "litellm", "n8n", "langfuse", "qdrant"]
    assert "cannot connect to http://admin:***@127.0.0.1:1" in report.results[1].detail
    assert "s3cret-pw" not in health_text(report)
    assert "s3cret-pw" not in json.dumps(report.to_dict())


@pytest.mark.parametrize("timeout", ["inf", "1e12", "nan", "0", "-1", "61"])
def test_the_cli_refuses_a_timeout_out_of_range_in_one_line(
    project_with_env: Path, monkeypatch: pytest.MonkeyPatch, timeout: str
) -> None:
    monkeypatch.setattr("ops.health.probes.PROBES", (up("caddy"),))
    ran = run_ops("health", "--project-dir", str(project_with_env), "--timeout", timeout)

    assert ran.returncode == 2
    assert ran.stdout == ""
    assert ran.stderr.startswith("error: the health timeout must be more than 0 s and at most 60 s, got ")
    assert len(ran.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("service", "env", "variable"),
    [
        ("caddy", {"LITELLM_DOMAIN": " "}, "LITELLM_DOMAIN"),
        ("n8n", {"N8N_DOMAIN": "n8n.example.org", "OPS_N8N_URL": "", "BASIC_AUTH_PASSWORD": ""}, "BASIC_AUTH_PASSWORD"),
        ("n8n", {"N8N_DOMAIN": "n8n.example.org", "BASIC_AUTH_USER": "", "BASIC_AUTH_PASSWORD": "pw"}, "BASIC_AUTH_USER"),
    ],
)
def test_an_empty_name_or_login_for_caddy_is_that_lines_problem_naming_the_variable(
    tmp_path: Path, service: str, env: dict[str, str], variable: str
) -> None:
    # asked anyway, Caddy would answer a TLS error (no server name) or n8n's line only "HTTP 401"
    report = run_health(settings_with(tmp_path, OPS_CADDY_URL="https://127.0.0.1:1", **env), timeout=10, only=(service,))

    assert report.down == [service]
    assert report.results[0].detail.startswith(f"{variable} is empty: ")


@pytest.mark.parametrize(
    ("error", "detail"),
    [  # libpq's own connect timeout and ours end at the same second: whichever comes first, one verdict
        ('psql: error: connection to server at "127.0.0.1", port 5 failed: timeout expired', "no answer within 1 s ("),
        ('psql: error: connection to server at "127.0.0.1", port 5 failed: Connection refused', "127.0.0.1:5: psql failed"),
    ],
)
def test_a_postgres_that_does_not_answer_in_time_is_said_so_whoever_timed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: str, detail: str
) -> None:
    from ops.errors import ServiceError
    from ops.health.probes import postgres
    from ops.journal import Psql

    def refuse(self: Psql, sql: str, **params: str) -> list[list[str]]:
        raise ServiceError(f"psql failed: {error}")

    monkeypatch.setattr(Psql, "query", refuse)
    settings = settings_with(tmp_path, OPS_POSTGRES_URL="postgresql://postgres:pw@127.0.0.1:5/postgres")
    result = postgres.probe(settings, timeout=1)
    assert not result.ok and result.detail.startswith(detail), result.detail
