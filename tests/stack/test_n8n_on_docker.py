"""Slice 4's deploy on Docker: n8n's CLI in a one-off compose container, as `make slice-4` runs it on the VM.

n8n has no image here, and its npm install is 2.8 GB: the stand-in is the Debian python image with the
n8n and the Node 24 that `make clients` cached on the host mounted into it, started with the compose
file's own environment, volume, network and memory limit. What runs is ops.workflows.n8n.ComposeN8n:
`docker compose run --rm --no-deps -T --entrypoint n8n n8n import:...` with the credentials on stdin,
the exports through a temp file in the one-off container, `docker compose restart n8n` and the probe
with the container's Node. The workflow reaches the stand-in LiteLLM at http://litellm:4000, as on the VM.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ops import tools
from ops.envfile import read_env_file
from ops.local.processes import free_port
from ops.slices import engine, slice_04
from ops.workflows import router
from ops.workflows.n8n import ComposeN8n, published
from tests.conftest import REPO, require
from tests.stack.conftest import StackProject

pytestmark = pytest.mark.stack

OVERRIDE = """# Test-only: n8n from the host's cache (make clients) in the Debian stand-in, its webhooks on loopback.
services:
  n8n:
    image: {python}
    entrypoint: ["n8n"]
    environment:
      PATH: /opt/node/bin:/opt/n8n/node_modules/.bin:/usr/local/bin:/usr/bin:/bin
      # the image's user folder (its volume): the stand-in runs as root, whose home is elsewhere
      HOME: /home/node
      N8N_USER_FOLDER: /home/node
    volumes:
      - {node_dir}:/opt/node:ro
      - {n8n_dir}:/opt/n8n
    ports:
      - "127.0.0.1:{n8n_port}:5678"
    healthcheck:
      interval: 2s
"""


@pytest.fixture(scope="module")
def n8n_project(module_stack_project: StackProject, images: dict[str, str]) -> Iterator[tuple[StackProject, int]]:
    found = tools.n8n_install()
    require(found, f"n8n {tools.N8N_VERSION} in {tools.cache_dir()} (make clients runs scripts/install-n8n.sh)")
    assert found is not None
    node, n8n_dir = found
    project, port = module_stack_project, free_port()
    (project.dir / "routing-rules.yaml").write_text((REPO / "routing-rules.yaml").read_text())
    (project.dir / "workflows").mkdir(exist_ok=True)
    (project.dir / router.WORKFLOW_FILE).write_text((REPO / router.WORKFLOW_FILE).read_text())
    (project.dir / "compose.n8n.yml").write_text(
        OVERRIDE.format(python=images["python"], node_dir=Path(node).parent.parent, n8n_dir=n8n_dir, n8n_port=port)
    )
    project.overrides = (*project.overrides, "compose.n8n.yml")
    env = project.settings.env_file
    env.write_text(
        env.read_text().replace(
            "OPS_COMPOSE_OVERRIDES=compose.standin.yml", "OPS_COMPOSE_OVERRIDES=compose.standin.yml,compose.n8n.yml"
        )
    )
    up = project.compose("up", "--detach", "--wait", "--wait-timeout", "240", "litellm", "n8n", check=False)
    if up.returncode != 0:
        logs = project.compose("logs", "--tail", "40", "n8n", "litellm", check=False).stdout
        pytest.fail(f"n8n and the gateway did not come up:\n{up.stderr[-2000:]}\n{logs[-4000:]}")
    yield project, port


def test_slice_4_deploys_through_compose_and_a_second_deploy_changes_nothing(n8n_project: tuple[StackProject, int]) -> None:
    project, port = n8n_project
    runtime = engine.Runtime.for_settings(project.settings)
    assert runtime.n8n is None  # the VM's path: n8n's CLI in a one-off container of the service
    changed = slice_04.deploy(runtime)
    assert changed[-1] == "n8n restarted to serve it", changed
    secret = read_env_file(project.settings.env_file)["N8N_WEBHOOK_SECRET"]
    response = httpx.post(
        f"http://127.0.0.1:{port}/webhook/{router.WEBHOOK_PATH}",
        json={"task": "Explain AI"},
        headers={router.WEBHOOK_HEADER: secret},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["model"], answer["reason"]) == ("gpt-4", "Complex reasoning")
    assert answer["answer"].startswith("[mock openai ")  # through the stand-in LiteLLM at http://litellm:4000
    exported = ComposeN8n(runtime.compose).export("workflow", router.WORKFLOW_ID)
    assert exported is not None and published(exported[0])
    assert slice_04.deploy(runtime) == []
