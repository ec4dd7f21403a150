"""Slice 1 for real on Docker with the compose file's own limits and healthchecks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
import pytest

from ops.errors import OpsError
from ops.journal import Journal, Lock, lock_holder
from ops.local.processes import wait_until
from ops.slices import engine
from tests.fakes.llm import MockControl
from tests.stack.conftest import StackProject

pytestmark = pytest.mark.stack


def containers(project: StackProject) -> dict[str, dict[str, str]]:
    out = project.compose("ps", "--all", "--format", "json").stdout.strip()
    rows = json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines() if line.strip()]
    return {r["Service"]: r for r in rows}


def test_slice_1_plans_applies_verifies_is_idempotent_and_rolls_back(stack_project: StackProject) -> None:
    runtime = engine.Runtime.for_settings(stack_project.settings)
    plan = engine.run_plan(runtime, 1)
    assert plan.running == {"redis": False, "litellm": False}
    assert plan.compose_actions == ["redis: start", "litellm: start"]

    applied = engine.run_apply(runtime, 1)
    assert applied.outcome == "ok", [c.to_dict() for c in applied.checks]
    assert {"redis", "litellm"} <= set(applied.changed)
    assert all(c.ok for c in applied.checks)
    limit = subprocess.run(
        ["docker", "inspect", "--format", "{{.HostConfig.Memory}}", containers(stack_project)["litellm"]["ID"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert int(limit) == 448 * 2**20  # the compose file's own limit
    models = httpx.get(
        f"http://127.0.0.1:{stack_project.gateway_port}/v1/models",
        headers={"Authorization": f"Bearer {runtime.target.master_key}"},
    ).json()
    assert {"gpt-4", "claude-3", "gemini-2"} <= {m["id"] for m in models["data"]}

    again = engine.run_apply(runtime, 1)
    assert again.outcome == "unchanged" and again.changed == []

    states = {s.number: s.state for s in engine.run_status(runtime)}
    assert states[1] == "apply ok" and states[2] == "never run"

    rolled = engine.run_rollback(runtime, 1)
    assert "stopped redis, litellm" in rolled.steps
    assert any(step.startswith("dropped database litellm") for step in rolled.steps)
    saved = stack_project.settings.snapshots_dir / rolled.saved_to / "databases" / "litellm.dump"
    assert saved.stat().st_size > 0  # nothing dropped that was not saved first
    after = containers(stack_project)
    assert "litellm" not in after or after["litellm"]["State"] != "running"
    assert after["postgres"]["State"] == "running"  # it ran before the apply


def test_failed_verify_rolls_back_to_the_last_verified_config(stack_project: StackProject) -> None:
    runtime = engine.Runtime.for_settings(stack_project.settings)
    assert engine.run_apply(runtime, 1).outcome == "ok"
    config = stack_project.dir / "litellm-config.yaml"
    good = config.read_text()
    broken = good.replace("  - model_name: gemini-2 ", "  - model_name: gemini-two ").replace("- gemini-2: [", "- gemini-two: [")
    assert broken != good
    config.write_text(broken)

    report = engine.run_apply(runtime, 1)
    assert report.outcome == "rolled-back", report.to_dict()
    assert [c.name for c in report.checks if not c.ok] == ["models listed"]
    assert config.read_text() == good  # the last verified version
    saved = stack_project.settings.snapshots_dir / report.rollback.saved_to / "files" / "litellm-config.yaml"  # type: ignore[union-attr]
    assert saved.read_text() == broken  # the operator's edit is kept, not lost
    assert all(c.ok for c in engine.run_verify(runtime, 1).checks)  # the stack works again
    journal = Journal(runtime.psql).entries(5)
    assert [e.outcome for e in journal[:2]] == ["ok", "rolled-back"]


def test_held_lock_stops_an_apply_before_any_change(stack_project: StackProject) -> None:
    runtime = engine.Runtime.for_settings(stack_project.settings)
    Journal(runtime.psql)  # creates the schema
    runtime.psql.query(
        "INSERT INTO ops.lock (id, holder, host, pid, operation, heartbeat_at) "
        "VALUES (1, 'alice', 'laptop', 4242, 'apply slice 7', now() - interval '2 hours');"
    )
    with pytest.raises(OpsError, match=r"'apply slice 7' by alice@laptop .* looks stale"):
        engine.run_apply(runtime, 1)
    assert "litellm" not in containers(stack_project)
    runtime.psql.query("UPDATE ops.lock SET heartbeat_at = now();")
    with pytest.raises(OpsError, match="another operation holds the lock") as caught:
        Lock(runtime.psql, "test").acquire()
    assert "stale" not in str(caught.value)


def test_missing_prerequisite_is_refused(stack_project: StackProject) -> None:
    runtime = engine.Runtime.for_settings(stack_project.settings)
    with pytest.raises(OpsError, match=r"slice 2 needs slice 1 applied and verified first \(make slice-1\)"):
        engine.run_apply(runtime, 2)
    assert "litellm" not in containers(stack_project)


def test_slices_1_to_3_end_to_end_through_the_cli(stack_project: StackProject) -> None:
    """What `make slice-1` ... `make slice-3` run, with --yes since CI has no terminal."""
    import sys

    def ops(*args: str) -> dict[str, object]:
        proc = subprocess.run(
            [sys.executable, "-m", "ops.cli", "slice", *args, "--project-dir", str(stack_project.dir), "--json"],
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result: dict[str, object] = json.loads(proc.stdout)
        return result

    assert ops("1", "--plan")["compose_actions"] == ["redis: start", "litellm: start"]
    for number in ("1", "2", "3"):
        assert ops(number, "--apply", "--yes")["outcome"] in ("ok", "unchanged")
    verified = ops("3", "--verify")
    assert verified["ok"] and len(verified["checks"]) == 5  # type: ignore[arg-type]
    # the provider refuses the drill's key, as OpenAI refuses an invalid one
    httpx.post(
        f"http://127.0.0.1:{stack_project.mock_port}/__mock/behaviour",
        json={"provider": "openai", "reject_keys": ["sk-broken-by-ops-drill"]},
    ).raise_for_status()
    drill = ops("5", "--verify")  # recreates litellm with a broken OpenAI key, then with the right one
    assert drill["ok"], drill
    assert ops("1", "--verify")["ok"]  # OpenAI answers again after the drill
    status = subprocess.run(
        [sys.executable, "-m", "ops.cli", "status", "--project-dir", str(stack_project.dir), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    states = {s["number"]: s["state"] for s in json.loads(status.stdout)["slices"]}
    assert states[1] == "verify ok" and states[2] == "apply ok" and states[3] == "verify ok" and states[4] == "never run"


def test_a_failure_before_verify_rolls_back_and_a_failed_rollback_blocks_dependents(stack_project: StackProject) -> None:
    runtime = engine.Runtime.for_settings(stack_project.settings)
    assert engine.run_apply(runtime, 1).outcome == "ok"
    compose_file = stack_project.dir / "docker-compose.vps.yml"
    good = compose_file.read_text()
    mount = "      - ./litellm-config.yaml:/app/config.yaml:ro\n"
    assert mount in good
    # a bind mount whose source is missing: `docker compose config` accepts it, `up` fails creating the container
    missing = (
        "      - type: bind\n        source: ./missing-dir\n        target: /missing\n"
        "        bind:\n          create_host_path: false\n"
    )
    compose_file.write_text(good.replace(mount, mount + missing))

    report = engine.run_apply(runtime, 1)
    assert report.outcome == "rolled-back", report.to_dict()
    assert report.error.startswith("docker compose up redis litellm failed: ") and report.checks == []
    assert compose_file.read_text() == good  # the last verified version
    assert all(c.ok for c in engine.run_verify(runtime, 1).checks)  # and the stack works again
    rolled = Journal(runtime.psql).entries(2)[1]
    assert (rolled.action, rolled.outcome) == ("apply", "rolled-back")
    assert rolled.detail.startswith("docker compose up redis litellm failed: ")

    config = stack_project.dir / "litellm-config.yaml"
    config.write_text(config.read_text().replace("  - model_name: gemini-2 ", "  - model_name: gemini-two "))
    # the rollback cannot restore the last verified config: it is gone
    (stack_project.dir / ".ops" / "applied" / "slice01" / "files" / "litellm-config.yaml").unlink()
    with pytest.raises(
        OpsError,
        match=r"^slice 1: verify failed \(models listed: .*\); the automatic rollback to \S+-slice01-apply failed too: "
        r"FileNotFoundError: .*Its state is unknown: fix the cause, then run `ops slice 1 --rollback`$",
    ):
        engine.run_apply(runtime, 1)
    states = {s.number: s for s in engine.run_status(runtime)}
    assert states[1].state == "apply rollback-failed" and "ops slice 1 --rollback" in states[1].hint
    with pytest.raises(OpsError, match=r"slice 2 needs slice 1 .* its latest operation is `apply rollback-failed`"):
        engine.run_apply(runtime, 2)
    assert lock_holder(runtime.psql) is None


def litellm_openai_key(project: StackProject) -> str:
    """The OPENAI_API_KEY the running litellm container was created with."""
    env = subprocess.run(
        ["docker", "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", containers(project)["litellm"]["ID"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("OPENAI_API_KEY="))


def test_sigterm_mid_apply_and_mid_drill_releases_the_lock_and_restores_the_key(stack_project: StackProject) -> None:
    """What a dropped ssh session or `systemctl stop` does to `ops slice 1 --apply` and to slice 5's drill."""
    runtime = engine.Runtime.for_settings(stack_project.settings)
    journal = Journal(runtime.psql)

    def ops_slice(*args: str) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "ops.cli", "slice", *args, "--project-dir", str(stack_project.dir)]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def state(number: int) -> str:
        entry = journal.slice_states().get(number)
        return f"{entry.action} {entry.outcome}" if entry else "never run"

    apply = ops_slice("1", "--apply", "--yes")
    wait_until(lambda: state(1) == "apply running", 300, "the apply to start")
    apply.send_signal(signal.SIGTERM)
    _, stderr = apply.communicate(timeout=300)
    assert apply.returncode == 128 + signal.SIGTERM, stderr
    assert "error: slice 1: interrupted by SIGTERM" in stderr and "Traceback" not in stderr
    assert lock_holder(runtime.psql) is None
    assert state(1) == "apply interrupted"
    assert engine.run_apply(runtime, 1).outcome in ("ok", "unchanged")  # resume: apply again

    real_key = litellm_openai_key(stack_project)
    # OpenAI refuses the drill's key, as the real one does; the fallback (claude-3) answers slowly, so the
    # signal lands while the key is broken however fast the drill recreates litellm, never after it ended
    provider = MockControl(f"http://127.0.0.1:{stack_project.mock_port}")
    provider.reset()  # no earlier call counts as the drill's
    provider.set("openai", reject_keys=["sk-broken-by-ops-drill"])
    provider.set("anthropic", latency_ms=120_000)
    drill = ops_slice("5", "--verify")
    wait_until(lambda: litellm_openai_key(stack_project) == "sk-broken-by-ops-drill", 300, "the drill to break the key")
    wait_until(lambda: any(c["provider"] == "anthropic" for c in provider.calls()), 120, "the drill's fallback call")
    drill.send_signal(signal.SIGTERM)
    _, stderr = drill.communicate(timeout=600)
    provider.reset()
    assert drill.returncode == 128 + signal.SIGTERM, stderr
    assert litellm_openai_key(stack_project) == real_key == "mock-openai-key"
    assert containers(stack_project)["litellm"]["State"] == "running"
    assert lock_holder(runtime.psql) is None
    assert state(5) == "verify interrupted"
    checks = engine.run_verify(runtime, 1).checks
    assert all(c.ok for c in checks), [c.to_dict() for c in checks]  # OpenAI answers with the real key again
