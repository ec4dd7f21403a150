"""`ops deploy`: the running stack brought to what the project's files describe, health-gated, undone on failure.

Like Kamal's deploy, for one compose project: under the operator lock (the slice
engine's, so a slice and a deploy never run at once) and journaled (ops.journal),

1. plan: the services of the enabled profiles (`docker compose config`), and for
   each whether it starts, is recreated and why: its compose configuration
   changed (compose's own hash), a file it bind-mounts read-only changed since the
   last deploy (compose does not see those), its image is another build than the
   one its container runs (a pull, a rebuild); a locally built image (the
   observer's) is rebuilt first;
2. record the previous state under .ops/deploys/<stamp>-deploy: the files as they
   were last deployed (.ops/deployed; before any deploy, the slices' last verified
   copies), the files this deploy brings (so a rollback loses no edit), and the
   image each container runs, also tagged aistack-rollback/<service>:<project> so
   a rebuilt or re-pulled tag can be pointed back at it;
3. `docker compose up --wait`, the changed services recreated, the routing
   workflow deployed into n8n when it changed (slice 4's deploy step), then the
   health gate (ops.runtime.gate.wait_healthy) over every deployed service;
4. healthy: the files are recorded as deployed (.ops/deployed). Not healthy, or a
   step failed: the previous files and images are put back, those services
   recreated and health-gated again, the journal says rolled-back and the report
   is not ok (the CLI exits 1 saying what failed; 3 when the rollback failed too).
   SIGTERM (a dropped ssh session) rolls back the same way before the process stops.
   The journal is in the stack's own Postgres, which a bad deploy can break: in the
   rollback its writes are best-effort (notes), so the rollback always runs.

The tracked files: the compose files, vps.env, routing-rules.yaml, workflows/*.json
and every read-only bind mount inside the project (not under a hidden directory:
.ops, the observer's ssh keys). docs/DEPLOY.md is the operator's page.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ops.config import COMPOSE_FILE, ENV_FILE, ROUTING_RULES, Settings, load_settings
from ops.errors import ConfigError, OpsError, ServiceError
from ops.health import HealthReport, run_health
from ops.interrupts import Interrupted, shielded, signals_as_exceptions
from ops.journal import Journal, Lock
from ops.runtime.compose import Compose, ContainerState
from ops.runtime.gate import NotHealthy, down_text, wait_healthy
from ops.runtime.postgres_volume import require_startable_volume
from ops.slices import engine, registered

DEFAULT_TIMEOUT = 300.0  # seconds for compose's --wait and the health gate together, each way
MAX_TIMEOUT = 3600.0
KEEP_DEPLOYS = 5  # deploy records kept in .ops/deploys (the newest; older ones are pruned after each deploy)
ROLLBACK_REPOSITORY = "aistack-rollback"  # aistack-rollback/<service>:<project> keeps the previous image
WORKFLOWS = "workflows"
PROBE_OF = {"langfuse-web": "langfuse"}  # compose service -> its `ops health` probe, where the names differ
ROUTING_WORKFLOW_SERVICE = "n8n"
# Slice 1 records these whole-stack files, and later slices (COMPOSE_PROFILES) or the operator change them after:
# its copy is no version to roll back to. Until a deploy records them, a rollback leaves them as they are.
SLICE_COPIES_TOO_OLD = frozenset({ENV_FILE, COMPOSE_FILE})


def deploys_dir(settings: Settings) -> Path:
    """Given Settings, return where each deploy's record is kept (.ops/deploys)."""
    return settings.project_dir / ".ops" / "deploys"


def deployed_dir(settings: Settings) -> Path:
    """Given Settings, return where the files as last deployed are kept (.ops/deployed)."""
    return settings.project_dir / ".ops" / "deployed"


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the compose configuration as deploy sees it."""

    name: str
    image: str
    built: bool  # has a build: section (the observer): rebuilt before it is started
    mounts: tuple[str, ...]  # tracked files it bind-mounts read-only, relative to the project
    one_shot: bool = False  # restart "no": a job compose runs to completion on each up (postgres-init)


@dataclass(frozen=True)
class Running:
    """A service's container now: its id, whether it runs, the image id it runs and compose's configuration hash."""

    container_id: str
    running: bool
    image_id: str
    config_hash: str


@dataclass
class ServiceAction:
    service: str
    action: str  # start | recreate | rebuild | run (a one-shot job) | stop (not in the configuration) | unchanged
    reasons: list[str] = field(default_factory=list)
    force: bool = False  # recreated by force: compose would not notice (a mounted file, an image under the same tag)

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "action": self.action, "reasons": self.reasons, "force": self.force}


@dataclass
class DeployPlan:
    project: str
    services: list[ServiceAction]
    files: dict[str, str]  # tracked file -> how it differs from the last deploy (only those that do)
    workflows: bool  # the routing workflow goes into n8n
    recorded: bool  # an earlier deploy (or a verified slice) recorded the files the stack runs
    digest: str = ""
    # the first deploy: True when every running container was created from the current vps.env and compose file
    # (compose's hashes match), which are then recorded as the version a rollback puts back; None: not the first
    baseline: bool | None = None

    @property
    def hash(self) -> str:
        text = json.dumps([self.digest, [a.to_dict() for a in self.services], self.workflows], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def changing(self) -> list[str]:
        return [a.service for a in self.services if a.action not in ("unchanged", "run")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "services": [a.to_dict() for a in self.services],
            "files": self.files,
            "workflows": self.workflows,
            "recorded": self.recorded,
            "baseline": self.baseline,
            "plan_hash": self.hash,
        }


@dataclass
class DeployReport:
    outcome: str  # ok | rolled-back | rollback-failed | dry-run
    plan: DeployPlan
    record: str = ""  # the deploy's directory under .ops/deploys
    steps: list[str] = field(default_factory=list)
    error: str = ""  # what failed, when it rolled back
    rollback_error: str = ""  # why the rollback failed too (outcome rollback-failed)
    rollback: list[str] = field(default_factory=list)
    health: HealthReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome in ("ok", "dry-run")

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "ok": self.ok,
            "plan": self.plan.to_dict(),
            "record": self.record,
            "steps": self.steps,
            "error": self.error,
            "rollback": self.rollback,
            "rollback_error": self.rollback_error,
            "health": self.health.to_dict() if self.health else None,
            "notes": self.notes,
        }


def check_timeout(timeout: float) -> float:
    """Given --timeout, return it. Raise ConfigError unless it is more than 0 and at most MAX_TIMEOUT seconds."""
    if not 0 < timeout <= MAX_TIMEOUT:  # also NaN
        raise ConfigError(f"the deploy timeout must be more than 0 s and at most {MAX_TIMEOUT:g} s, got {timeout:g}")
    return timeout


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _files_under(project: Path, source: Path) -> list[str]:
    """Given a bind mount's source, return the tracked files it holds, relative to project ([] outside it)."""
    try:
        relative = source.resolve().relative_to(project)
    except ValueError:
        return []
    if _hidden(relative) or not source.exists():
        return []
    if source.is_dir():
        found = (p for p in sorted(source.rglob("*")) if p.is_file())
        return [str(p.relative_to(project)) for p in found if not _hidden(p.relative_to(project))]
    return [str(relative)]


def read_services(config: Any, project: Path) -> list[ServiceSpec]:
    """Given `docker compose config --format json` parsed and the project directory, return its services.

    Raise ConfigError if the configuration has no services mapping or a service has no image.
    """
    services = config.get("services") if isinstance(config, dict) else None
    if not isinstance(services, dict) or not services:
        raise ConfigError("docker compose config lists no services: check docker-compose.vps.yml and COMPOSE_PROFILES")
    specs = []
    for name, spec in services.items():
        image = spec.get("image") if isinstance(spec, dict) else None
        if not isinstance(image, str) or not image:
            raise ConfigError(f"service {name} has no image in docker-compose.vps.yml: deploy keeps each service's image by name")
        mounts: list[str] = []
        for volume in spec.get("volumes") or []:
            if isinstance(volume, dict) and volume.get("type") == "bind" and volume.get("read_only"):
                mounts += _files_under(project, Path(str(volume.get("source", ""))))
        one_shot = str(spec.get("restart") or "no") == "no"
        specs.append(ServiceSpec(name, image, "build" in spec, tuple(dict.fromkeys(mounts)), one_shot))
    return specs


def tracked_files(settings: Settings, specs: list[ServiceSpec]) -> list[str]:
    """Given Settings and the services, return the files a deploy records, relative to the project, sorted."""
    project = settings.project_dir
    names = [settings.compose_file, *settings.compose_overrides, settings.env_file, settings.routing_rules]
    found = {str(p.relative_to(project)) for p in names}
    workflows = project / WORKFLOWS
    if workflows.is_dir():
        found |= {str(p.relative_to(project)) for p in workflows.glob("*.json")}
    for spec in specs:
        found |= set(spec.mounts)
    return sorted(found)


@dataclass(frozen=True)
class RecordedFile:
    """A file as the stack last ran it: whether it existed, its mode and where its copy is."""

    existed: bool
    mode: int | None = None
    copy: Path | None = None
    deployed: bool = True  # recorded by a deploy (False: a slice's last verified copy)


def recorded_files(settings: Settings) -> dict[str, RecordedFile]:
    """Given Settings, return each file as last deployed (.ops/deployed), or, for a file no deploy recorded,
    as its slice was last applied and verified (.ops/applied, the newest first; not vps.env or the compose file).

    Raise OpsError if a record's state.json cannot be read."""
    found: dict[str, RecordedFile] = {}
    sources = [deployed_dir(settings)]
    slices = [d for n in registered() if (d := engine._last_good(settings, n)) is not None]
    sources += sorted(slices, key=lambda d: (d / "state.json").stat().st_mtime, reverse=True)
    for index, directory in enumerate(sources):
        state_file = directory / "state.json"
        if not state_file.is_file():
            continue
        try:
            state = json.loads(state_file.read_text())
            present, modes = dict(state["files"]), dict(state.get("modes", {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OpsError(f"{state_file} cannot be read ({exc}): move it aside and deploy again") from exc
        for name, existed in present.items():
            engine.record_target(settings.project_dir, name)  # a record from a backup must not name ../x or /etc/x
            if index > 0 and name in SLICE_COPIES_TOO_OLD:
                continue
            if name not in found:
                copy = directory / "files" / name
                found[name] = RecordedFile(bool(existed), modes.get(name), copy if existed else None, index == 0)
    return found


def changed_files(project: Path, tracked: list[str], recorded: dict[str, RecordedFile]) -> dict[str, str]:
    """Given the tracked files and the recorded ones, return each tracked file that differs, and how."""
    changed = {}
    for name in tracked:
        path, before = project / name, recorded.get(name)
        if before is None:
            if path.exists():
                changed[name] = "not recorded by an earlier deploy"
        elif not before.existed:
            if path.exists():
                changed[name] = "new since the last deploy"
        elif not path.exists():
            changed[name] = "removed since the last deploy"
        elif before.copy is None or not before.copy.is_file() or before.copy.read_bytes() != path.read_bytes():
            changed[name] = "changed since the last deploy"
    return changed


def decide(
    specs: list[ServiceSpec],
    running: dict[str, Running],
    wanted_hashes: dict[str, str],
    image_ids: dict[str, str | None],
    changed: dict[str, str],
) -> list[ServiceAction]:
    """Given the services, their containers, compose's hashes for them, the id their image reference names now
    (None: not on this engine) and the changed files, return what deploy does to each service and why."""
    actions = []
    for spec in specs:
        container = running.get(spec.name)
        if spec.one_shot:
            actions.append(ServiceAction(spec.name, "run", ["a one-shot job: compose runs it on each up"]))
            continue
        if container is None or not container.running:
            reasons = ["not running"] + (["its image is built here first"] if spec.built else [])
            actions.append(ServiceAction(spec.name, "start", reasons))
            continue
        reasons, force = [], False
        if wanted_hashes.get(spec.name) != container.config_hash:
            reasons.append("its compose configuration changed")
        for name in spec.mounts:
            if name in changed:
                reasons.append(f"{name} {changed[name].replace(' since the last deploy', '')}")
                force = True
        wanted = image_ids.get(spec.name)
        if wanted is None and not spec.built:
            reasons.append(f"its image {spec.image} is not on this engine (compose pulls it)")
        elif wanted is not None and wanted != container.image_id:
            reasons.append(f"its image {spec.image} is another build than the one it runs")
            force = True
        if reasons:
            actions.append(ServiceAction(spec.name, "recreate", reasons, force))
        elif spec.built:
            actions.append(ServiceAction(spec.name, "rebuild", ["its image is built again; recreated if that changes it"]))
        else:
            actions.append(ServiceAction(spec.name, "unchanged"))
    return actions


def to_stop(running: dict[str, Running], services: list[str]) -> list[ServiceAction]:
    """Given the containers and the configuration's services, return the running ones it no longer has (a profile
    turned off in COMPOSE_PROFILES, a service deleted from the compose file), to stop once the deploy is healthy."""
    return [
        ServiceAction(name, "stop", ["not in the enabled profiles or the compose file (its volumes are kept)"])
        for name, container in running.items()
        if container.running and name not in services
    ]


def workflows_changed(changed: dict[str, str], services: list[str]) -> bool:
    """Given the changed files and the services deployed, return True if the routing workflow goes into n8n."""
    routing = {ROUTING_RULES} | {name for name in changed if name.startswith(f"{WORKFLOWS}/")}
    return ROUTING_WORKFLOW_SERVICE in services and any(name in changed for name in routing)


def probes_for(services: list[str]) -> tuple[str, ...]:
    """Given compose services, return the `ops health` probes that ask them (a service without one: none)."""
    from ops.health.probes import PROBES

    names = {p.NAME for p in PROBES}
    return tuple(dict.fromkeys(PROBE_OF.get(s, s) for s in services if PROBE_OF.get(s, s) in names))


def _digest(project: Path, names: list[str]) -> str:
    digest = hashlib.sha256()
    for name in names:
        path = project / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"<absent>") + b"\0")
    return digest.hexdigest()[:16]


# --- what runs: compose and the Docker engine ---------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """The compose project and its Docker engine, as deploy asks them."""

    compose: Compose

    @functools.cached_property
    def docker(self) -> Any:
        from ops.runtime.docker import client

        return client(self.compose.docker_host)

    def config(self) -> Any:
        """Return `docker compose config --format json` parsed. Raise ServiceError if compose refuses the files."""
        out = self.compose.run("config", "--format", "json").stdout
        try:
            return json.loads(out)
        except ValueError as exc:
            raise ServiceError(f"docker compose config printed no JSON: {out[:200]}") from exc

    def running(self) -> dict[str, Running]:
        """Return each service's container: running or not, the image id it runs, its configuration hash."""
        states: dict[str, ContainerState] = self.compose.ps()
        hashes = self.compose.container_hashes()
        found = {}
        for name, state in states.items():
            image_id = ""
            with contextlib.suppress(Exception):  # a container removed since ps: it runs nothing
                image_id = str(self.docker.containers.get(state.container_id).attrs.get("Image", ""))
            found[name] = Running(state.container_id, state.running, image_id, hashes.get(name, ""))
        return found

    def image_id(self, reference: str) -> str | None:
        """Return the id of the image reference names on this engine, or None when it is not there."""
        from docker.errors import ImageNotFound

        try:
            return str(self.docker.images.get(reference).id)
        except ImageNotFound:
            return None

    def container_image(self, container_id: str) -> tuple[str, str]:
        """Given a container, return (the image reference it was created from, the image id it runs)."""
        attrs = self.docker.containers.get(container_id).attrs
        return str(attrs.get("Config", {}).get("Image", "")), str(attrs.get("Image", ""))

    def tag(self, image_id: str, reference: str) -> None:
        """Point reference (repository[:tag]) at image_id. Raise ServiceError if the engine refuses."""
        from docker.errors import DockerException
        from docker.utils import parse_repository_tag

        repository, tag = parse_repository_tag(reference)
        try:
            if not self.docker.images.get(image_id).tag(repository, tag or "latest"):
                raise ServiceError(f"Docker did not tag {image_id[:19]} as {reference}")
        except DockerException as exc:
            raise ServiceError(f"cannot tag {image_id[:19]} as {reference}: {exc}") from exc


def rollback_tag(project: str, service: str) -> str:
    """Given the compose project and a service, return the tag that keeps its previous image."""
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", project)[:128] or "default"
    return f"{ROLLBACK_REPOSITORY}/{service}:{tag}"


def make_plan(settings: Settings, stack: Stack) -> tuple[DeployPlan, list[ServiceSpec], dict[str, Running]]:
    """Given Settings and the stack, return the plan, the services and their containers now (reading only)."""
    config = stack.config()
    specs = read_services(config, settings.project_dir)
    running = stack.running()
    names = [s.name for s in specs]
    wanted = stack.compose.config_hashes(names)
    image_ids = {s.name: stack.image_id(s.image) for s in specs}
    tracked = tracked_files(settings, specs)
    recorded = recorded_files(settings)
    changed = changed_files(settings.project_dir, tracked, recorded)
    actions = decide(specs, running, wanted, image_ids, changed)
    digest = _digest(settings.project_dir, tracked) + "".join(f"{k}={v}" for k, v in sorted(image_ids.items()) if v)
    project = str(config.get("name") or settings.project_dir.name)
    actions += to_stop(running, names)
    plan = DeployPlan(project, actions, changed, workflows_changed(changed, names), bool(recorded), digest)
    if not (deployed_dir(settings) / "state.json").is_file():
        plan.baseline = first_deploy_baseline(running, wanted)
    return plan, specs, running


def first_deploy_baseline(running: dict[str, Running], wanted: dict[str, str]) -> bool:
    """Given the containers and compose's hashes for the current files, return True if every running service of the
    configuration was created from them: then vps.env and the compose file as they are now are what runs."""
    return all(wanted[name] == c.config_hash for name, c in running.items() if c.running and name in wanted)


# --- the deploy ----------------------------------------------------------------------------------------------


def _save_record(
    settings: Settings, plan: DeployPlan, specs: list[ServiceSpec], running: dict[str, Running], stack: Stack
) -> Path:
    """Write the deploy's record (previous files, attempted files, previous images, kept under a tag); return it.

    Written as <name>.partial and renamed when complete. Raise OpsError or ServiceError (the partial removed).
    """
    project = settings.project_dir
    stamp = datetime.now(UTC).strftime(engine.STAMP)
    directory = deploys_dir(settings) / f"{stamp}-deploy"
    partial = directory.with_name(directory.name + engine.PARTIAL)
    engine._private_dir(deploys_dir(settings))
    try:
        engine._private_dir(partial)
        tracked = tracked_files(settings, specs)
        recorded = recorded_files(settings)
        previous: dict[str, bool] = {}
        modes: dict[str, int] = {}
        for name, before in recorded.items():
            if name not in tracked and not before.deployed:
                continue  # a slice's file deploy does not manage (a crontab): never touched
            previous[name] = before.existed
            if before.existed and before.copy is not None and before.copy.is_file():
                engine._private_copy(before.copy, partial / "previous" / name)
                if before.mode is not None:
                    modes[name] = before.mode
            elif before.existed:
                del previous[name]  # a recorded copy gone missing: not restorable, left as it is
        # every file a rollback may overwrite or remove is kept: the tracked ones and those only recorded (a file
        # deployed before whose profile is now off), so a hand edit of it is in attempted/ too
        previous, modes = _untracked_before(settings, tracked, recorded, partial / "previous", previous, modes)
        if plan.baseline:  # the first deploy, and the containers run the current vps.env and compose file
            for name in SLICE_COPIES_TOO_OLD & set(tracked) - set(previous):
                if (project / name).is_file():
                    engine._private_copy(project / name, partial / "previous" / name)
                    previous[name], modes[name] = True, (project / name).stat().st_mode & 0o777
        attempted, attempted_modes = engine.save_files(project, sorted(set(tracked) | set(previous)), partial / "attempted")
        images = {}
        for spec in specs:
            container = running.get(spec.name)
            if container is None or not container.running:
                continue
            reference, image_id = stack.container_image(container.container_id)
            kept = rollback_tag(plan.project, spec.name)
            stack.tag(image_id, kept)  # a rebuilt or re-pulled reference can be pointed back at it
            images[spec.name] = {"reference": reference, "id": image_id, "kept_as": kept}
        state = {
            "plan": plan.to_dict(),
            "previous": {"files": previous, "modes": modes},
            "unknown": [n for n in tracked if n not in previous],
            "attempted": {"files": attempted, "modes": attempted_modes},
            "running": sorted(n for n, c in running.items() if c.running and n in {s.name for s in specs}),
            "images": images,
        }
        engine._private_text(partial / "state.json", json.dumps(state, indent=2))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(directory)
    return directory


def _untracked_before(
    settings: Settings,
    tracked: list[str],
    recorded: dict[str, RecordedFile],
    target: Path,
    previous: dict[str, bool],
    modes: dict[str, int],
) -> tuple[dict[str, bool], dict[str, int]]:
    """Given the tracked files no record names, once a deploy was recorded: return previous and modes with each
    one as it was at that deploy. Untouched since (modified before .ops/deployed was written): its copy is saved
    under target, as it is now. Added since (a new workflow, a new mount): absent, so a rollback removes it (its
    copy is in the record's attempted/). Before any deploy they stay unknown (a rollback leaves them)."""
    state = deployed_dir(settings) / "state.json"
    if not state.is_file():
        return previous, modes
    deployed_at = state.stat().st_mtime_ns
    for name in tracked:
        path = settings.project_dir / name
        if name in recorded or name in previous:
            continue
        if path.is_file() and path.stat().st_mtime_ns < deployed_at:
            engine._private_copy(path, target / name)
            previous[name], modes[name] = True, path.stat().st_mode & 0o777
        else:
            previous[name] = False
    return previous, modes


def _record_deployed(settings: Settings, record: Path) -> None:
    """Make the files this deploy brought (saved in its record) the deployed ones (.ops/deployed)."""
    state = json.loads((record / "state.json").read_text())["attempted"]
    target = deployed_dir(settings)
    fresh = target.with_name(target.name + engine.PARTIAL)
    shutil.rmtree(fresh, ignore_errors=True)
    engine._private_dir(fresh)
    engine._private_dir(fresh / "files")
    for name, existed in state["files"].items():
        if existed:
            engine._private_copy(record / "attempted" / name, fresh / "files" / name)
    engine._private_text(
        fresh / "state.json", json.dumps({"files": state["files"], "modes": state["modes"], "deploy": record.name})
    )
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    shutil.rmtree(old, ignore_errors=True)


class _Clock:
    """The deploy's time budget: compose's --wait and the health gate share timeout seconds."""

    def __init__(self, timeout: float) -> None:
        self.deadline = time.monotonic() + timeout

    def left(self) -> int:
        return max(5, int(self.deadline - time.monotonic()))


def _bring_up(stack: Stack, actions: list[ServiceAction], services: list[str], clock: _Clock) -> list[str]:
    """compose up every service, then recreate by force those compose would not; return the steps."""
    steps = []
    before = {n: c.container_id for n, c in stack.running().items()}
    stack.compose.up(services, timeout=clock.left())
    steps.append(f"docker compose up {' '.join(services)}")
    after = {n: c.container_id for n, c in stack.running().items()}
    forced = [a.service for a in actions if a.force and before.get(a.service) == after.get(a.service)]
    if forced:
        stack.compose.up(forced, timeout=clock.left(), force_recreate=True)
        steps.append(f"recreated {', '.join(forced)}")
    return steps


def _deploy_workflow(runtime: engine.Runtime) -> list[str]:
    from ops.slices import slice_04

    return slice_04.deploy(runtime)


def run_deploy(
    settings: Settings, *, dry_run: bool = False, timeout: float = DEFAULT_TIMEOUT, approved: str | None = None
) -> DeployReport:
    """Given Settings, deploy the project's files to the running stack; return the report (not ok: rolled back,
    or outcome rollback-failed when the rollback failed too).

    Raise ConfigError on a bad timeout, placeholder secrets or unreadable records; LockError (an OpsError) while
    a slice or another deploy holds the operator lock (nothing changed then); OpsError if the record cannot be
    written (nothing changed either), or if approved (the hash of the plan the operator confirmed) differs from
    the plan made under the lock (nothing changed); Interrupted on SIGTERM, SIGHUP or SIGINT after rolling back
    and releasing the lock (during a rollback: once it has finished).
    """
    check_timeout(timeout)
    runtime = engine.Runtime.for_settings(settings)
    stack = Stack(runtime.compose)
    if dry_run:
        return DeployReport("dry-run", make_plan(settings, stack)[0])
    ops_dir = settings.project_dir / ".ops"
    engine.require_writable_dirs(settings, [ops_dir, deploys_dir(settings), deployed_dir(settings)])
    postgres = runtime.compose.ps().get("postgres")
    if postgres is None or not postgres.running:
        require_startable_volume(runtime.compose)  # an older major's volume: refuse before compose recreates postgres
        start_postgres(runtime.compose)  # the journal and the lock live there
    journal = Journal(runtime.psql)
    notes: list[str] = []
    with signals_as_exceptions(), _locked(runtime, notes):
        plan, specs, running = make_plan(settings, stack)  # under the lock: no slice changes the stack meanwhile
        check_approved(plan, approved)
        healthy_before = _healthy_now(settings, [n for n, c in running.items() if c.running])
        report = _deploy(settings, runtime, stack, journal, plan, specs, running, timeout, healthy_before)
        report.notes += _prune(settings)
        report.notes += notes  # filled in when the lock's release failed (on leaving the with)
    return report


def start_postgres(compose: Compose) -> None:
    """Start the stack's postgres for the journal and the lock, before the lock is held: its existing container as
    it was created (the files last deployed), never recreated from files the deploy has not yet recorded.
    Raise ServiceError if it does not become healthy."""
    compose.run("up", "--detach", "--no-recreate", "--wait", "--wait-timeout", "300", "postgres", timeout=360)


def check_approved(plan: DeployPlan, approved: str | None) -> None:
    """Given the plan made under the lock and the hash of the one the operator confirmed (None: --yes), return.

    Raise OpsError if they differ: a file, an image or a container changed between the question and the lock.
    """
    if approved is not None and plan.hash != approved:
        raise OpsError(
            f"the plan changed since you confirmed it (plan {approved}, now {plan.hash}: a file, an image or a "
            "container changed meanwhile); nothing was changed: run `ops deploy` again to see the new plan"
        )


@contextlib.contextmanager
def _locked(runtime: engine.Runtime, notes: list[str]) -> Iterator[None]:
    """Hold the operator lock; its release is best-effort (a note), since the deploy may have left Postgres down."""
    lock = Lock(runtime.psql, "deploy")
    lock.__enter__()
    try:
        yield
    finally:
        try:
            lock.__exit__()
        except Exception as exc:
            notes.append(
                f"the operator lock could not be released ({engine._reason(exc)}): once Postgres is up, `ops lock break --yes`"
            )


def _healthy_now(settings: Settings, running: list[str]) -> tuple[str, ...] | None:
    """Given the running services, return the probes of those that pass `ops health` now, before the deploy
    (a rollback is gated on these only); None when the health run itself fails (the rollback then asks all)."""
    probes = probes_for(running)
    if not probes:
        return ()
    try:
        report = run_health(settings, only=probes)
    except Exception:
        return None
    return tuple(r.name for r in report.results if r.ok)


def _deploy(
    settings: Settings,
    runtime: engine.Runtime,
    stack: Stack,
    journal: Journal,
    plan: DeployPlan,
    specs: list[ServiceSpec],
    running: dict[str, Running],
    timeout: float,
    healthy_before: tuple[str, ...] | None = None,
) -> DeployReport:
    """The journaled part of run_deploy, under the lock."""
    services = [s.name for s in specs]
    resume = "run `ops deploy` again (it converges), or restore the files in the newest .ops/deploys record"
    with engine._journaled(journal, None, "deploy", plan.hash, resume) as row:
        row.step = "recording the previous state"
        try:
            record = _save_record(settings, plan, specs, running, stack)
        except Exception as exc:
            detail = f"{engine._failure(row.step, exc)}; nothing was changed"
            row.finish("failed", detail)
            raise OpsError(f"deploy: {detail}") from exc
        report = DeployReport("ok", plan, record.name)
        clock = _Clock(timeout)
        try:
            built = [s.name for s in specs if s.built]
            if built:
                row.step = f"docker compose build {' '.join(built)}"
                runtime.compose.run("build", *built, timeout=clock.left() + 600)
                report.steps.append(f"built {', '.join(built)}")
                plan.services = _after_build(stack, plan.services, specs, running)
            row.step = "docker compose up"
            report.steps += _bring_up(stack, plan.services, services, clock)
            if plan.workflows:
                row.step = "deploying the routing workflow into n8n"
                report.steps += _deploy_workflow(runtime)
            row.step = "the health gate"
            report.health = _gate(settings, services, clock)
            if report.health is not None:
                report.steps.append(f"healthy: {', '.join(r.name for r in report.health.results)}")
        except Exception as exc:
            report.error = _what_failed(row.step, exc)
            if isinstance(exc, NotHealthy):
                report.health = exc.report
        except Interrupted as exc:  # SIGTERM, a dropped ssh session: never leave the stack half-deployed
            report.error = f"{exc} during {row.step}"
            row.step = f"the rollback (after: {report.error})"
            with shielded():  # a second signal is ignored while unwinding; the rollback finishes first
                _undo(settings, runtime, stack, row, report, record, plan, specs, timeout, healthy_before, "interrupted")
            raise
        if not report.error:
            with shielded():  # the change is live and healthy: record it whole
                _record_deployed(settings, record)
                report.notes += _stop_the_rest(stack, plan, report)
                row.finish("ok", json.dumps({"changed": plan.changing, "record": record.name}))
            return report
        row.step = f"the rollback (after: {report.error})"
        with shielded():  # a signal waits until the rollback has finished
            _undo(settings, runtime, stack, row, report, record, plan, specs, timeout, healthy_before, "rolled-back")
        return report


def _undo(
    settings: Settings,
    runtime: engine.Runtime,
    stack: Stack,
    row: Any,
    report: DeployReport,
    record: Path,
    plan: DeployPlan,
    specs: list[ServiceSpec],
    timeout: float,
    healthy_before: tuple[str, ...] | None,
    outcome: str,
) -> None:
    """Roll the deploy back and journal it (outcome when it worked, else rollback-failed); fill in report.

    The journal lives in the stack's own Postgres, which the deploy may have broken: its writes here are
    best-effort (a failed one is a note), so the rollback always runs. The record is renamed -rolled-back.
    """
    _journal_best_effort(
        report, "rolling-back", lambda: row.mark("rolling-back", f"{report.error}; rolling back to {record.name}")
    )
    try:
        report.rollback = _roll_back(settings, runtime, stack, record, plan, specs, _Clock(timeout), healthy_before)
    except Exception as exc:
        report.outcome = "rollback-failed"
        report.rollback_error = engine._reason(exc)
        detail = f"{report.error}; the rollback to {record.name} failed too: {report.rollback_error}"
        _finish_best_effort(row, report, "rollback-failed", detail)
        return
    _finish_best_effort(row, report, outcome, f"{report.error}; restored {record.name}")
    report.outcome = "rolled-back"
    try:
        rolled = record.rename(record.with_name(record.name + engine.ROLLED_BACK))
    except OSError as exc:
        report.notes.append(f"the record could not be renamed {record.name}{engine.ROLLED_BACK} ({exc}); it is kept as it is")
        return
    report.record = rolled.name


def _journal_best_effort(report: DeployReport, what: str, write: Callable[[], None]) -> bool:
    """Write to the journal; on failure (Postgres down) add a note to the report; return True if it was written."""
    try:
        write()
    except Exception as exc:
        report.notes.append(f"the journal could not record {what} (its Postgres: {engine._reason(exc)})")
        return False
    return True


def _finish_best_effort(row: Any, report: DeployReport, outcome: str, detail: str) -> None:
    """Finish the journal row (best-effort, see _journal_best_effort); it counts as finished either way."""
    _journal_best_effort(report, outcome, lambda: row.finish(outcome, detail))
    row.done = True


def _stop_the_rest(stack: Stack, plan: DeployPlan, report: DeployReport) -> list[str]:
    """After a healthy deploy, stop the containers of services the configuration no longer has; return notes.

    After the gate, not before: a rollback never has to start them again. A failure is a note, not a rollback.
    """
    stop = [a.service for a in plan.services if a.action == "stop"]
    if not stop:
        return []
    try:
        stack.compose.stop_and_remove(stop)
    except ServiceError as exc:
        return [f"could not stop {', '.join(stop)}: {exc}"]
    report.steps.append(f"stopped {', '.join(stop)} (volumes kept)")
    return []


def _what_failed(step: str, exc: Exception) -> str:
    if isinstance(exc, NotHealthy):
        return f"the health gate failed: {down_text(exc.report)}"
    return engine._failure(step, exc)


def _after_build(
    stack: Stack, actions: list[ServiceAction], specs: list[ServiceSpec], running: dict[str, Running]
) -> list[ServiceAction]:
    """After the build, mark each built service whose image changed for recreation."""
    images = {s.name: s.image for s in specs if s.built}
    out = []
    for action in actions:
        container = running.get(action.service)
        if action.service in images and action.action == "rebuild" and container is not None:
            if stack.image_id(images[action.service]) != container.image_id:
                action = ServiceAction(action.service, "recreate", ["its image was rebuilt and changed"], force=True)
            else:
                action = ServiceAction(action.service, "unchanged", ["rebuilt, the same image"])
        out.append(action)
    return out


def _roll_back(
    settings: Settings,
    runtime: engine.Runtime,
    stack: Stack,
    record: Path,
    plan: DeployPlan,
    specs: list[ServiceSpec],
    clock: _Clock,
    healthy_before: tuple[str, ...] | None = None,
) -> list[str]:
    """Put the previous files and images back, bring the services that ran back up as they were, health-gate them.

    Every service that ran before and whose container now differs from the restored files (compose's
    configuration hash, the image it runs, a mounted file restored) is recreated, not only those the plan
    changed: an interrupted deploy, run again, plans as unchanged what it had already recreated. The gate asks
    the services that passed `ops health` before the deploy (healthy_before; None: every one that ran).
    """
    state = json.loads((record / "state.json").read_text())
    steps = []
    previous = state["previous"]
    restored, removed = engine.restore_files(settings.project_dir, previous["files"], previous["modes"], record / "previous")
    steps += [f"restored {name}" for name in restored]
    steps += [f"removed {name} (saved in {record.name}/attempted)" for name in removed]
    if state["unknown"]:
        steps.append(f"left as they are (no earlier version recorded): {', '.join(state['unknown'])}")
    # vps.env may be restored: its secrets, profiles and project name are the previous ones from here on
    settings, runtime, stack = _fresh(settings.project_dir)
    for image in state["images"].values():
        if image["reference"] and stack.image_id(image["reference"]) != image["id"]:
            stack.tag(image["id"], image["reference"])
            steps.append(f"{image['reference']} points at the previous image again ({image['id'][7:19]})")
    was_running = list(state["running"])
    started = [a.service for a in plan.services if a.action == "start" and a.service not in was_running]
    if started:
        stack.compose.stop_and_remove(started)
        steps.append(f"stopped {', '.join(started)} (not running before the deploy)")
    changed = [a.service for a in plan.services if a.action in ("start", "recreate", "rebuild") and a.service in was_running]
    changed += _differing(stack, state, specs, was_running, {*restored, *removed})
    changed = [s for s in was_running if s in changed]
    if changed:
        stack.compose.up(changed, timeout=clock.left(), force_recreate=True)
        steps.append(f"recreated {', '.join(changed)} from the previous files and images")
    if plan.workflows:
        steps += _deploy_workflow(runtime)
    gated = was_running if healthy_before is None else [s for s in was_running if PROBE_OF.get(s, s) in healthy_before]
    report = _gate(settings, gated, clock)
    if report is not None:
        steps.append(f"healthy again: {', '.join(r.name for r in report.results)}")
    return steps


def _fresh(project_dir: Path) -> tuple[Settings, engine.Runtime, Stack]:
    """Given the project directory, return its Settings, Runtime and Stack read now (after vps.env was restored)."""
    settings = load_settings(project_dir)
    runtime = engine.Runtime.for_settings(settings)
    return settings, runtime, Stack(runtime.compose)


def _differing(
    stack: Stack, state: dict[str, Any], specs: list[ServiceSpec], was_running: list[str], files: set[str]
) -> list[str]:
    """Given the restored stack, return the services that ran before whose container differs from the previous
    files and images: compose's configuration hash, the image it runs, or a file it mounts was restored."""
    mounts = {s.name: set(s.mounts) for s in specs}
    wanted = stack.compose.config_hashes(was_running)
    now = stack.running()
    differing = []
    for name in was_running:
        container, image = now.get(name), state["images"].get(name)
        if (
            container is None
            or not container.running
            or container.config_hash != wanted.get(name)
            or (image is not None and container.image_id != image["id"])
            or mounts.get(name, set()) & files
        ):
            differing.append(name)
    return differing


def _gate(settings: Settings, services: list[str], clock: _Clock) -> HealthReport | None:
    """Health-gate the services' probes (None: no service has one; wait_healthy with none would ask them all)."""
    probes = probes_for(services)
    return wait_healthy(settings, probes, timeout=clock.left()) if probes else None


def _prune(settings: Settings, now: datetime | None = None) -> list[str]:
    """Delete the deploy records past KEEP_DEPLOYS (and any .partial); return notes for the operator.

    A rolled-back record (its attempted/ may hold the only copy of an edit, vps.env's too) does not count
    toward KEEP_DEPLOYS: it is kept engine.BEFORE_ROLLBACK_DAYS, as the slices keep what a rollback replaced.
    """
    directory = deploys_dir(settings)
    now = now or datetime.now(UTC)
    notes = []
    try:
        names = sorted(p.name for p in directory.iterdir() if p.is_dir())
        rolled = [n for n in names if n.endswith(engine.ROLLED_BACK)]
        plain = [n for n in names if not n.endswith(engine.PARTIAL) and n not in rolled]
        delete = [n for n in names if n.endswith(engine.PARTIAL)] + plain[: max(0, len(plain) - KEEP_DEPLOYS)]
        for name in rolled:
            try:
                taken = datetime.strptime(name.split("-", 1)[0], engine.STAMP).replace(tzinfo=UTC)
            except ValueError:
                continue  # not a name deploy writes: kept
            if now - taken > timedelta(days=engine.BEFORE_ROLLBACK_DAYS):
                delete.append(name)
                notes.append(f"deleted {name}: a rolled-back deploy's record is kept {engine.BEFORE_ROLLBACK_DAYS} days")
        with shielded():
            for name in delete:
                shutil.rmtree(directory / name, ignore_errors=True)
    except OSError as exc:
        return [f"pruning {directory} failed: {exc}"]
    return notes


def deploy_text(report: DeployReport) -> str:
    """Given a DeployReport, return it for the operator: each service's action and why, the steps, the verdict."""
    lines = []
    plan = report.plan
    if not plan.recorded:
        lines.append("no earlier deploy recorded: each service that mounts a project file is recreated")
    if plan.baseline is False:
        lines.append(
            "first deploy: the running containers were not created from the current vps.env and compose file, so a "
            "rollback cannot put those two back (it leaves them as they are)"
        )
    for action in plan.services:
        why = f"  ({'; '.join(action.reasons)})" if action.reasons else ""
        lines.append(f"{action.service:<16}{action.action}{why}")
    if plan.workflows:
        lines.append("the routing workflow goes into n8n (workflows/ or routing-rules.yaml changed)")
    lines += [f"  {step}" for step in report.steps]
    if report.outcome == "dry-run":
        lines.append(f"dry run: nothing changed ({len(plan.changing)} service(s) would change)")
    elif report.outcome == "ok":
        lines.append(f"OK: deployed ({', '.join(plan.changing) or 'nothing changed'}); record {report.record}")
    elif report.outcome == "rollback-failed":
        lines.append(f"FAILED: {report.error}")
        lines.append(f"ROLLBACK FAILED too: {report.rollback_error}")
        lines.append(
            f"the stack may run a mix of both versions: fix the cause, then run `ops deploy` again (the previous files "
            f"are in .ops/deploys/{report.record}/previous, the attempted ones in .../attempted)"
        )
    else:
        lines.append(f"FAILED: {report.error}")
        lines += [f"  rollback: {step}" for step in report.rollback]
        lines.append(
            f"ROLLED BACK to the previous files and images; what was attempted is in .ops/deploys/{report.record}/attempted"
        )
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)
