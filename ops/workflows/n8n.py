"""Deploy the routing workflow and its two credentials into n8n with n8n's own CLI, idempotently.

Why the CLI and not n8n's public REST API: the API needs an API key, which
only an owner account can create, and the owner is whoever first opens the
editor (docs/RUNBOOK.md): ops would have to create that account itself, or
wait for it. n8n's port is not published on the VM either (only Caddy is).
``n8n import:credentials`` keeps the credentials' ids, so the workflow file
can name them; ``import:workflow`` updates the workflow of the same id;
``publish:workflow`` activates it. Those write n8n's database directly and a
running n8n does not see them until it restarts (source: n8n 2.40.7
dist/commands/publish/workflow.js, "Please restart n8n for changes to take
effect"), so a change ends with a restart. The CLI runs in its own container
(``docker compose run --rm``), not with ``exec`` inside the running one: a
second n8n process there would share the server's memory limit.

Idempotent: what n8n holds is exported and compared first (credentials
decrypted, in memory only); nothing is imported, published or restarted
when it already matches.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from ops.errors import ConfigError, ServiceError
from ops.local.processes import N8nServer
from ops.runtime.compose import Compose

Kind = Literal["workflow", "credentials"]
NOT_FOUND = ("No workflows found", "No credentials found")
# what import:workflow is compared on; n8n adds ids, versions, timestamps and sharing to the rest
WORKFLOW_KEYS = ("name", "nodes", "connections", "settings")
CREDENTIAL_KEYS = ("id", "name", "type", "data")
READY_SECONDS = 300


class N8n(Protocol):
    """An n8n on the stack's database: its CLI, and a restart that waits until it serves webhooks again."""

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run `n8n ARGS` with stdin; return its output. Raise ServiceError if it fails."""
        ...

    def export(self, kind: Kind, ident: str) -> list[dict[str, Any]] | None:
        """Return `n8n export:KIND --id=IDENT` (credentials decrypted), or None if there is no such one."""
        ...

    def restart(self, webhook: str) -> None:
        """Restart n8n and wait until it serves the webhook path (POST /webhook/PATH is no longer 404: n8n
        answers /healthz/readiness before it activates published workflows). Raise ServiceError if it does not."""
        ...


def _export_flags(kind: Kind) -> list[str]:
    return ["--decrypted"] if kind == "credentials" else []


def _parse_export(kind: Kind, ident: str, status: int, text: str, log: str) -> list[dict[str, Any]] | None:
    if status != 0:
        if any(marker in log for marker in NOT_FOUND):
            return None
        raise ServiceError(f"n8n export:{kind} --id={ident} failed: {log.strip()[-400:]}")
    try:
        data = json.loads(text)
    except ValueError:
        shown = "(not shown: it holds decrypted credentials)" if kind == "credentials" else repr(text[:200])
        raise ServiceError(f"n8n export:{kind} --id={ident} printed no JSON: {shown}") from None
    return data if isinstance(data, list) else [data]


# in the one-off container: export to a private temp file (credentials are decrypted), print it, delete it;
# in memory (/dev/shm) where there is one, so a container killed mid-export leaves nothing on disk
_EXPORT_SCRIPT = (
    'f=$(mktemp -p /dev/shm 2>/dev/null || mktemp) && n8n "export:$1" --id="$2" $3 --output="$f" >"$f.log" 2>&1; s=$?; '
    'if [ $s -eq 0 ]; then cat "$f"; else cat "$f.log" >&2; fi; rm -f "$f" "$f.log"; exit $s'
)


@dataclass(frozen=True)
class ComposeN8n:
    """The stack's n8n: the CLI in a one-off container of the n8n service (same image, database and key)."""

    compose: Compose
    service: str = "n8n"

    def _run(self, *args: str) -> list[str]:
        # --no-deps: postgres runs already; -T: no terminal, stdin is a pipe (the CLI reads /dev/stdin)
        return ["run", "--rm", "--no-deps", "-T", *args]

    def cli(self, *args: str, stdin: str | None = None) -> str:
        proc = self.compose.run(*self._run("--entrypoint", "n8n", self.service, *args), input=stdin, timeout=300)
        return proc.stdout

    def export(self, kind: Kind, ident: str) -> list[dict[str, Any]] | None:
        flags = " ".join(_export_flags(kind))
        args = self._run("--entrypoint", "sh", self.service, "-c", _EXPORT_SCRIPT, "sh", kind, ident, flags)
        proc = self.compose.run(*args, timeout=300, check=False)
        return _parse_export(kind, ident, proc.returncode, proc.stdout, proc.stderr)

    def restart(self, webhook: str) -> None:
        self.compose.run("restart", self.service, timeout=300)
        # the container's own Node (fetch is built in) prints the webhook's status, 0 while nothing answers
        script = (
            f"fetch('http://127.0.0.1:5678/webhook/{webhook}', {{method: 'POST'}})"
            ".then((r) => console.log(r.status), () => console.log(0))"
        )
        probe = ("exec", "-T", self.service, "node", "-e", script)

        def status() -> int | None:
            proc = self.compose.run(*probe, check=False, timeout=30)
            found = re.fullmatch(r"\s*(\d{3})\s*", proc.stdout)
            return int(found.group(1)) if proc.returncode == 0 and found else None

        _wait_registered(status, webhook)


@dataclass(frozen=True)
class LocalN8n:
    """An n8n started by ops.local (tests, local mode): its CLI with the server's own environment."""

    server: N8nServer

    def _cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.server.cli_argv(), *args],
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.server.cli_env(),
            timeout=300,
        )

    def cli(self, *args: str, stdin: str | None = None) -> str:
        proc = self._cli(*args, stdin=stdin)
        if proc.returncode != 0:
            raise ServiceError(f"n8n {args[0]} failed: {(proc.stdout + proc.stderr).strip()[-400:]}")
        return proc.stdout

    def export(self, kind: Kind, ident: str) -> list[dict[str, Any]] | None:
        with tempfile.TemporaryDirectory(prefix="aistack-n8n-export-") as tmp:
            target = Path(tmp) / "export.json"
            proc = self._cli(f"export:{kind}", f"--id={ident}", *_export_flags(kind), f"--output={target}")
            text = target.read_text() if target.exists() else ""
        return _parse_export(kind, ident, proc.returncode, text, proc.stdout + proc.stderr)

    def restart(self, webhook: str) -> None:
        self.server.halt()
        self.server.start()
        url = f"{self.server.url}/webhook/{webhook}"

        def status() -> int | None:
            try:
                return httpx.post(url, timeout=10).status_code
            except httpx.HTTPError:
                return None

        _wait_registered(status, webhook)


def _wait_registered(status: Callable[[], int | None], webhook: str) -> None:
    """Poll status() (the webhook's HTTP status, None while n8n does not answer) until it is not 404."""
    deadline = time.monotonic() + READY_SECONDS
    while (code := status()) in (None, 404):
        if time.monotonic() > deadline:
            state = "does not answer" if code is None else "answers 404 (the workflow is not active)"
            raise ServiceError(f"n8n restarted, but /webhook/{webhook} {state} after {READY_SECONDS} s")
        time.sleep(0.5)


def _same_credential(current: list[dict[str, Any]] | None, wanted: dict[str, Any]) -> bool:
    if not current:
        return False
    return all(current[0].get(key) == wanted.get(key) for key in CREDENTIAL_KEYS)


def workflow_matches(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Given an exported workflow and the one to import, return True if n8n holds it already (its nodes,
    connections, settings and name; n8n adds its own ids, versions and timestamps)."""
    return all(current.get(key) == wanted.get(key) for key in WORKFLOW_KEYS)


def published(current: dict[str, Any]) -> bool:
    """Given an exported workflow, return True if its current version is the active (published) one."""
    return bool(current.get("active")) and current.get("activeVersionId") == current.get("versionId")


def _webhook_path(workflow: dict[str, Any]) -> str:
    paths = [n["parameters"]["path"] for n in workflow["nodes"] if n.get("type") == "n8n-nodes-base.webhook"]
    if not paths:
        raise ConfigError(f"workflow {workflow.get('name')!r} has no Webhook node")
    return str(paths[0])


def deploy(n8n: N8n, workflow: dict[str, Any], credentials: list[dict[str, Any]]) -> list[str]:
    """Bring n8n to the workflow and credentials given, published; return what changed ([] if nothing).

    Raise ServiceError if a CLI step fails or n8n does not come back after its restart.
    """
    changed = []
    stale = [c for c in credentials if not _same_credential(n8n.export("credentials", c["id"]), c)]
    if stale:
        n8n.cli("import:credentials", "--input=/dev/stdin", stdin=json.dumps(stale))
        changed += [f"n8n credential {c['name']!r}" for c in stale]
    exported = n8n.export("workflow", workflow["id"])
    current = exported[0] if exported else None
    if current is None or not workflow_matches(current, workflow):
        n8n.cli("import:workflow", "--input=/dev/stdin", stdin=json.dumps(workflow))
        changed.append(f"n8n workflow {workflow['name']!r} imported")
        current = None
    if current is None or not published(current):
        n8n.cli("publish:workflow", f"--id={workflow['id']}")
        changed.append(f"n8n workflow {workflow['name']!r} published")
        n8n.restart(_webhook_path(workflow))  # a running n8n loads published workflows at start only
        changed.append("n8n restarted to serve it")
    return changed
