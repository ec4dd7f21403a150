"""`ops bench scaling`'s compose project as the real `docker compose config` reads it (no engine needed)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ops import tools
from ops.bench.scaling import bench_env, render_override
from tests.conftest import REPO, require


def test_the_bench_project_is_the_stack_with_litellm_free_to_scale(tmp_path: Path) -> None:
    """The real `docker compose config` of the stack's file with our override: LiteLLM publishes no port (a second
    replica could not bind the stack's 127.0.0.1:4000), Caddy only a loopback one, and the mock sits behind LiteLLM."""
    compose = tools.docker_compose()
    require(compose, "docker compose")
    env = tmp_path / "bench.env"
    env.write_text(bench_env((REPO / "vps.env.example").read_text()))
    override = tmp_path / "compose.scaling.yml"
    override.write_text(render_override("litellm-image:1", 18080, 18099, REPO / "ops"))
    argv = [*(compose or []), "--project-directory", str(REPO), "-f", str(REPO / "docker-compose.vps.yml"), "-f", str(override)]
    out = subprocess.run(
        [*argv, "--env-file", str(env), "config", "--format", "json"], capture_output=True, text=True, check=True
    )
    services = json.loads(out.stdout)["services"]
    assert "ports" not in services["litellm"] and "ports" not in services["redis"]
    assert [(p["host_ip"], p["published"], p["target"]) for p in services["caddy"]["ports"]] == [("127.0.0.1", "18080", 80)]
    assert set(services["litellm"]["depends_on"]) == {"redis", "mock-provider"}
    assert services["litellm"]["environment"]["OPENAI_API_BASE"] == "http://mock-provider:8099/v1"
    assert services["litellm"]["environment"]["LANGFUSE_HOST"] == ""
    assert services["mock-provider"]["image"] == "litellm-image:1"
    assert services["caddy"]["environment"]["LITELLM_DOMAIN"] == "http://127.0.0.1"  # plain HTTP, no certificate
