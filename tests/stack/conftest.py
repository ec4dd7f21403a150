"""The stack tier: a real Docker engine, stand-in images, and a copy of the project wired to them.

The engine is Debian's docker.io; when `docker info` fails as root, the
fixture starts dockerd and stops it afterwards. Images are built once per
recipe (tests/stack/images.py). Every test project gets its own compose
project name, loopback ports and volumes, and is taken down with its volumes.
With AISTACK_REAL_IMAGES=1 (`make test-real`) the products run on the compose
file's own pinned images instead of the stand-ins.

No testcontainers: what is under test is the compose file itself (its limits,
healthchecks, networks and depends_on), so the tier starts containers through
`docker compose`; the only single containers are one-shot `docker run --rm`
helpers, and by default testcontainers starts its own reaper container
(testcontainers/ryuk), an image this machine cannot pull.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from ops import tools
from ops.config import Settings, load_settings
from ops.envfile import read_env_file
from ops.local.processes import free_port
from ops.secrets import init_secrets
from ops.stack import load_stack
from tests.conftest import PROJECT_FILES, REPO, require
from tests.stack.images import RECIPES, build, build_all

pytestmark = pytest.mark.stack
IMAGE_CACHE = Path(os.environ.get("AISTACK_STANDIN_CACHE", "/var/cache/aistack-standin"))
# `make test-real`: the compose file's own pinned images for the products (postgres, redis, caddy, litellm), pulled
# by compose; the stand-in python image still runs the contract fakes, the mock provider and the observer from source.
REAL_IMAGES = os.environ.get("AISTACK_REAL_IMAGES") == "1"


def _docker_ok() -> bool:
    return shutil.which("docker") is not None and subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    require(shutil.which("docker"), "docker (apt-get install docker.io)")
    require(tools.docker_compose(), "docker compose")
    started = None
    if not _docker_ok():
        require(shutil.which("dockerd") and os.geteuid() == 0, "a running Docker engine (or dockerd and root to start one)")
        log = open("/tmp/aistack-dockerd.log", "ab")  # noqa: SIM115 - lives as long as the daemon
        started = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not _docker_ok():
            if time.monotonic() > deadline or started.poll() is not None:
                pytest.fail("dockerd did not start: see /tmp/aistack-dockerd.log")
            time.sleep(1)
    yield
    if started is not None:
        started.terminate()
        started.wait(30)


@pytest.fixture(scope="session")
def images(docker_engine: None) -> dict[str, str]:
    require(shutil.which("debootstrap"), "debootstrap (apt-get install debootstrap)")
    if REAL_IMAGES:
        IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
        stack = load_stack(REPO / "docker-compose.vps.yml")
        real = {name: str(stack.service(name).image) for name in ("postgres", "redis", "caddy", "litellm")}
        return {**real, "python": build(RECIPES["python"], IMAGE_CACHE)}
    built = build_all(IMAGE_CACHE)
    return {**built, "litellm": built["python"]}


@dataclass
class StackProject:
    dir: Path
    name: str
    gateway_port: int
    langfuse_port: int
    mock_port: int
    redis_port: int
    qdrant_port: int
    http_port: int  # Caddy's 80 and 443
    https_port: int
    overrides: tuple[str, ...] = field(default=("compose.standin.yml",), kw_only=True)  # a module may add its own

    @property
    def settings(self) -> Settings:
        return load_settings(self.dir)

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [
            *(tools.docker_compose() or []),
            "--project-directory",
            str(self.dir),
            "-f",
            str(self.dir / "docker-compose.vps.yml"),
            *(arg for name in self.overrides for arg in ("-f", str(self.dir / name))),
            "--env-file",
            str(self.dir / "vps.env"),
            "-p",
            self.name,
            *args,
        ]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=600)


OVERRIDE = """# Test-only: stand-in images, loopback ports, and the contract fakes as containers. Healthchecks
# probe every 2 s instead of the stack's 10-30 s: `up --wait` on Docker 20.10 (no start_interval)
# otherwise waits a whole interval for the first probe; what each probe checks is unchanged.
services:
  postgres:
    image: {postgres}
    healthcheck:
      interval: 2s
  postgres-init:
    image: {postgres}
  redis:
    image: {redis}
    healthcheck:
      interval: 2s
    ports: !override
      - "127.0.0.1:{redis_port}:6379"
  caddy:
    image: {caddy}
    environment:
      # the official image's data and config directories (source: caddyserver/caddy-docker 2.10/alpine/Dockerfile,
      # ENV XDG_DATA_HOME /data): the stand-in keeps its certificates and internal CA on the caddy-data volume too
      XDG_DATA_HOME: /data
      XDG_CONFIG_HOME: /config
    healthcheck:
      interval: 2s
    ports: !override
      - "127.0.0.1:{http_port}:80"
      - "127.0.0.1:{https_port}:443"
  litellm:
    image: {litellm}
    # LiteLLM's database features need Prisma's engine, which cannot be fetched here: no DATABASE_URL.
    # `litellm` from PATH: the stand-in's /opt/venv/bin, the real image's pip install (source: BerriAI/litellm
    # Dockerfile, whose docker/prod_entrypoint.sh execs litellm), so make test-real runs the same gateway.
    entrypoint: ["sh", "-c", 'unset DATABASE_URL; exec litellm "$$@"', "litellm"]
    healthcheck:
      interval: 2s
    ports: !override
      - "127.0.0.1:{gateway_port}:4000"
    environment:
      OPENAI_API_BASE: http://mock-provider:8099/v1
      ANTHROPIC_API_BASE: http://mock-provider:8099
      GEMINI_API_BASE: http://mock-provider:8099/v1beta
      OPENROUTER_API_BASE: http://mock-provider:8099/api/v1
      LANGFUSE_HOST: http://langfuse-fake:3000
    depends_on:
      mock-provider:
        condition: service_healthy
  qdrant:
    image: {python}
    entrypoint: ["python3", "-m", "tests.fakes.qdrant", "--port", "6333", "--seed", "200"]
    working_dir: /src
    volumes:
      - {repo}/ops:/src/ops:ro
      - {repo}/tests:/src/tests:ro
    ports: !override
      - "127.0.0.1:{qdrant_port}:6333"
    healthcheck:
      interval: 2s
  observer:
    image: {python}
    build: !reset null
    entrypoint: ["python3", "-m", "ops.cli"]
    working_dir: /src
    volumes:
      - {repo}/ops:/src/ops:ro
    healthcheck:
      interval: 2s
  mock-provider:
    image: {python}
    entrypoint: ["python3", "-m", "ops.local.mock_provider", "--host", "0.0.0.0", "--port", "8099"]
    working_dir: /src
    volumes:
      - {repo}/ops:/src/ops:ro
    ports:
      - "127.0.0.1:{mock_port}:8099"
    networks: [edge]
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8099/health', timeout=3)"]
      interval: 2s
      retries: 30
    deploy:
      resources:
        limits:
          memory: 128M
  langfuse-fake:
    image: {python}
    entrypoint: ["python3", "-m", "tests.fakes.langfuse", "--port", "3000"]
    working_dir: /src
    environment:
      LANGFUSE_PUBLIC_KEY: ${{LANGFUSE_PUBLIC_KEY}}
      LANGFUSE_SECRET_KEY: ${{LANGFUSE_SECRET_KEY}}
    volumes:
      - {repo}/ops:/src/ops:ro
      - {repo}/tests:/src/tests:ro
    ports:
      - "127.0.0.1:{langfuse_port}:3000"
    networks: [edge]
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:3000/api/public/health')"]
      interval: 2s
      retries: 30
    deploy:
      resources:
        limits:
          memory: 192M
"""


def new_stack_project(
    images: dict[str, str], tmp_path: Path, start: tuple[str, ...] = ("postgres", "mock-provider", "langfuse-fake")
) -> Iterator[StackProject]:
    """A project copy using the stand-ins: vps.env generated, the start services (Postgres and the fakes) started,
    torn down with its volumes."""
    target = tmp_path / "project"
    target.mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target / name)
    ports = (free_port() for _ in range(7))
    project = StackProject(target, f"aistack-test-{uuid.uuid4().hex[:8]}", *ports)
    (target / "compose.standin.yml").write_text(
        OVERRIDE.format(
            repo=REPO,
            gateway_port=project.gateway_port,
            langfuse_port=project.langfuse_port,
            mock_port=project.mock_port,
            redis_port=project.redis_port,
            qdrant_port=project.qdrant_port,
            http_port=project.http_port,
            https_port=project.https_port,
            **images,
        )
    )
    settings = load_settings(target)
    init_secrets(settings.env_example, settings.env_file)
    text = settings.env_file.read_text()
    for key, value in {
        "COMPOSE_PROFILES": "",
        "COMPOSE_PROJECT_NAME": project.name,
        "OPS_COMPOSE_OVERRIDES": "compose.standin.yml",
        "OPS_GATEWAY_URL": f"http://127.0.0.1:{project.gateway_port}",
        "OPS_VERIFY_TIME_FACTOR": "20",  # the plan's "within N s" are the operator's checks, not timings here
        "OPS_LANGFUSE_URL": f"http://127.0.0.1:{project.langfuse_port}",
        "LANGFUSE_HOST": "http://langfuse-fake:3000",  # traces on: LiteLLM gets the Langfuse keys only with a host
        "OPS_QDRANT_URL": f"http://127.0.0.1:{project.qdrant_port}",
        "OPS_REDIS_URL": f"redis://:{quote(read_env_file(settings.env_file)['REDIS_PASSWORD'])}@127.0.0.1:{project.redis_port}/0",
        **{f"{provider}_API_KEY": f"mock-{provider.lower()}-key" for provider in ("OPENAI", "ANTHROPIC", "GEMINI", "OPENROUTER")},
    }.items():
        text = re.sub(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
    settings.env_file.write_text(text)
    try:
        up = project.compose("up", "--detach", "--wait", "--wait-timeout", "240", *start, check=False) if start else None
        if up is not None and up.returncode != 0:
            state = project.compose("ps", "--all", check=False).stdout
            logs = project.compose("logs", "--tail", "30", check=False).stdout
            pytest.fail(f"the stand-in stack did not come up:\n{up.stderr[-2000:]}\n{state}\n{logs[-4000:]}")
        yield project
    finally:
        project.compose("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)


@pytest.fixture
def stack_project(images: dict[str, str], tmp_path: Path) -> Iterator[StackProject]:
    yield from new_stack_project(images, tmp_path)


@pytest.fixture(scope="module")
def module_stack_project(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProject]:
    """One stack_project shared by a module's tests, for modules whose tests only read the stack."""
    yield from new_stack_project(images, tmp_path_factory.mktemp("stack"))
