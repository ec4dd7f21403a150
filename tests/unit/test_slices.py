from pathlib import Path

import pytest
from aiohttp import web

from ops.config import load_settings
from ops.errors import ConfigError, OpsError
from ops.secrets import init_secrets
from ops.slices import get_slice
from ops.slices.base import Target
from tests.fakes.server import ThreadedServer


@pytest.mark.parametrize(
    ("number", "message"), [(0, "slice 0 does not exist"), (13, "slice 13 does not exist"), (-1, "slice -1 does not exist")]
)
def test_bad_slice_numbers_are_named(number: int, message: str) -> None:
    with pytest.raises(OpsError, match=message):
        get_slice(number)


def test_target_refuses_placeholder_secrets(project: Path) -> None:
    (project / "vps.env").write_text((project / "vps.env.example").read_text())
    with pytest.raises(ConfigError, match="placeholder"):
        Target.from_settings(load_settings(project))


def test_target_from_generated_vps_env(project: Path) -> None:
    settings = load_settings(project)
    secrets = init_secrets(settings.env_example, settings.env_file)
    target = Target.from_settings(load_settings(project))
    assert target.gateway_url == "http://127.0.0.1:4000"
    assert target.langfuse_url == ""  # no tracing by default: no Langfuse to read from
    assert target.master_key == secrets["LITELLM_MASTER_KEY"]


def test_slice_2_without_a_langfuse_names_the_settings() -> None:
    """The default sends no traces (LANGFUSE_HOST empty): slice 2 fails saying so, not with a URL error."""

    async def chat(request: web.Request) -> web.Response:  # the gateway answers; there is no Langfuse to ask
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": "hi"}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    with ThreadedServer(app) as gateway:
        checks = get_slice(2).verify(Target(gateway.url, "sk-x", "", "pk", "sk", timeout=5))
    assert [c.ok for c in checks] == [False]
    assert "no Langfuse to read traces from: LANGFUSE_HOST is empty" in checks[0].detail


def test_twelve_slices_listed_with_their_prerequisites() -> None:
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "ops.cli", "slice", "--list", "--json"], capture_output=True, text=True, check=True
    )
    slices = json.loads(proc.stdout)["slices"]
    assert [s["slice"] for s in slices] == list(range(1, 13))
    assert {s["slice"]: s["requires"] for s in slices}[2] == [1]


@pytest.mark.parametrize("number", [4, 6, 11, 12])
def test_slices_without_criteria_yet_never_pass(number: int) -> None:
    checks = get_slice(number).verify(Target("http://127.0.0.1:9", "sk-x", "http://127.0.0.1:9", "pk", "sk"))
    assert [c.ok for c in checks] == [False] and "not checkable yet" in checks[0].detail
