"""ops host check and ops host prepare: pyinfra's operations planned against the host's facts, then applied.

check (and prepare --dry-run) adds every operation to a pyinfra State, which runs each one's generator
against the facts it reads: an operation that yields a command would change the host. prepare then runs
them; an operation that ran commands changed it. The follow-ups (restart journald or Docker when their
file changed, load the firewall) run in prepare only, when what they follow changed. What would touch
the kernel (sysctl, swap, nft) or start services is skipped in a container and said so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra.api.config import Config
from pyinfra.api.exceptions import ConnectError, PyinfraError
from pyinfra.api.host import Host
from pyinfra.api.inventory import Inventory
from pyinfra.api.operation import OperationMeta, add_op
from pyinfra.api.operations import run_ops
from pyinfra.api.state import State
from pyinfra.operations import files, server

from ops.config import Settings
from ops.host import operations as ops_
from ops.host import spec as s
from ops.host.spec import host_spec
from ops.host.target import HostError, HostTarget, parse_target


@dataclass(frozen=True)
class StepResult:
    """One part of the host: what it is, and changed / would change / ok / skipped (with why)."""

    name: str
    what: str
    status: str
    detail: str = ""

    def line(self) -> str:
        return f"{self.status:<13} {self.name:<10} {self.what}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class HostReport:
    """What ops host check or prepare found or did on one host."""

    target: str
    action: str  # check | prepare
    dry_run: bool
    in_container: bool
    steps: list[StepResult] = field(default_factory=list)

    @property
    def changes(self) -> list[StepResult]:
        return [r for r in self.steps if r.status in ("changed", "would change")]

    @property
    def ok(self) -> bool:
        """True when the host matches: nothing would change (check), or prepare ran (it raises when it fails)."""
        return not self.changes if self.action == "check" or self.dry_run else True

    def lines(self) -> list[str]:
        out = [r.line() for r in self.steps]
        n = len(self.changes)
        if self.action == "prepare" and not self.dry_run:
            out.append(f"{self.target}: changed {n} part(s)" if n else f"{self.target}: nothing to change, already prepared")
        else:
            out.append(f"{self.target}: {n} part(s) would change" if n else f"{self.target}: matches, nothing would change")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "action": self.action,
            "dry_run": self.dry_run,
            "in_container": self.in_container,
            "ok": self.ok,
            "changed": [r.name for r in self.changes],
            "steps": [{"name": r.name, "what": r.what, "status": r.status, "detail": r.detail} for r in self.steps],
        }


@dataclass
class _Step:
    name: str
    what: str
    metas: list[OperationMeta] = field(default_factory=list)
    skipped: str = ""


class _LogCapture(logging.Handler):
    """pyinfra's warnings and errors, kept for the error message instead of printed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _quiet_pyinfra() -> Iterator[_LogCapture]:
    logger = logging.getLogger("pyinfra")
    capture = _LogCapture()
    saved = logger.propagate
    logger.addHandler(capture)
    logger.propagate = False
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.propagate = saved


def _connect(target: HostTarget) -> tuple[State, Host]:
    """Given the target, return pyinfra's State and the connected Host. Raise HostError naming why it cannot connect."""
    name = target.hostname
    inventory = Inventory(([(name, target.inventory_data())], {}))  # type: ignore[no-untyped-call]
    state = State(inventory, Config(SUDO=not target.root, CONNECT_TIMEOUT=10))  # type: ignore[no-untyped-call]
    host = inventory.get_host(name)
    try:
        host.connect(show_errors=False, raise_exceptions=True)
    except ConnectError as exc:
        raise HostError(f"cannot log in to {target.label} over ssh: {_connect_reason(str(exc))}") from exc
    state.activate_host(host)
    if not target.root:
        # pyinfra asks for a sudo password on the terminal when sudo wants one: refuse first, in one line
        # (stderr dropped: pyinfra's retry would see sudo's "a password is required" line and prompt)
        ok, output = host.run_shell_command("sudo -n true 2>/dev/null && echo sudo-ok")
        if not ok or "sudo-ok" not in output.stdout:
            host.disconnect()
            raise HostError(f"sudo on {target.label} asks for a password (give the user passwordless sudo, or log in as root)")
    return state, host


def _connect_reason(message: str) -> str:
    """Given pyinfra's connect error, return a short reason."""
    lowered = message.lower()
    if "authentication" in lowered:
        return "the key was refused (authentication failed)"
    if "refused" in lowered or "unable to connect" in lowered:
        return "nothing answers on that port (is sshd running there, is the port right?)"
    if "resolve" in lowered:
        return "the host name does not resolve"
    if "timed out" in lowered:
        return "no answer (timed out; a firewall rule for port 22?)"
    return message.splitlines()[0] if message else "unknown error"


def _fact_reason(exc: Exception, capture: _LogCapture) -> str:
    """Given pyinfra's error reading a fact and its log, return a short reason."""
    said = " ".join([*capture.messages, str(exc)])
    if "password is required" in said or "a terminal is required" in said:
        return "sudo asks for a password (give the user passwordless sudo, or log in as root)"
    lines = [m.strip() for m in capture.messages if m.strip()]
    return lines[-1].splitlines()[-1] if lines else (str(exc).splitlines() or ["unknown error"])[0]


def _probe(host: Host, command: str) -> str:
    from pyinfra.facts.server import Command

    return str(host.get_fact(Command, command=f"({command}) 2>/dev/null || true") or "").strip()


def _in_container(host: Host) -> bool:
    """Whether the host is a container (systemd-detect-virt, else Docker's and Podman's marker files)."""
    found = _probe(
        host, "systemd-detect-virt --container; test -f /.dockerenv && echo docker; test -f /run/.containerenv && echo podman"
    )
    return any(word not in ("", "none") for word in found.split())


def _user_for_docker(target: HostTarget) -> str:
    """The login that gets the docker group: the ssh user, or locally the sudo caller; '' for root."""
    if target.local:
        return os.environ.get("SUDO_USER", "") if os.geteuid() == 0 else os.environ.get("USER", "")
    return "" if target.user == "root" else target.user


def _plan(state: State, host: Host, target: HostTarget, spec: s.HostSpec, container: bool, apply: bool) -> list[_Step]:
    """Add every operation to the state; return the steps, each with its operations' metas or why it is skipped."""

    def op(step: _Step, func: Callable[..., Any], **kwargs: Any) -> OperationMeta:
        meta: OperationMeta = add_op(state, func, host=host, **kwargs)[host]
        step.metas.append(meta)
        return meta

    def put(step: _Step, path: str) -> OperationMeta:
        content, mode = spec.files[path]
        return op(step, files.put, name=f"file {path}", src=StringIO(content), dest=path, mode=mode, user="root", group="root")

    def follow(step: _Step, name: str, command: str, after: OperationMeta) -> None:
        if apply:  # a follow-up of a change: in check it would always look like one
            op(step, server.shell, name=name, commands=[command], _if=after.did_change)

    systemd = _probe(host, "test -d /run/systemd/system && echo yes") == "yes"
    no_services = "no systemd running: skipped in a container" if container else ("" if systemd else "no systemd running")
    kernel = "skipped in a container" if container else ""
    steps: list[_Step] = []

    docker_ver = spec.docker_pins["docker-ce"].split(":")[-1].split("-")[0]
    compose_ver = spec.docker_pins["docker-compose-plugin"].split("-")[0]
    docker = _Step("docker", f"Docker Engine {docker_ver} and Compose {compose_ver} from Docker's apt repository, held")
    put(docker, s.DOCKER_KEY_PATH)
    put(docker, s.DOCKER_SOURCES_PATH)
    op(docker, ops_.packages, name="packages", wanted={**dict.fromkeys(spec.base_packages), **spec.docker_pins})
    op(docker, ops_.held, name="hold docker", names=list(spec.docker_pins))
    if user := _user_for_docker(target):
        op(docker, ops_.in_group, name="docker group", user=user, group="docker")
    daemon = put(docker, s.DAEMON_JSON_PATH)
    if not no_services:
        follow(docker, "restart docker", "systemctl restart docker", daemon)
        op(docker, ops_.unit_running, name="docker running", unit="docker")
    steps.append(docker)

    swap = _Step("swap", f"{spec.swap_mb} MB swap file {s.SWAP_PATH}, from the memory budget", skipped=kernel)
    if not kernel:
        op(swap, ops_.swap_file, name="swap file", path=s.SWAP_PATH, size_mb=spec.swap_mb)
        op(swap, files.line, name="fstab", path="/etc/fstab", line=f"^{s.SWAP_PATH} ", replace=f"{s.SWAP_PATH} none swap sw 0 0")
    steps.append(swap)

    sysctl = _Step("sysctl", f"vm.swappiness={s.SWAPPINESS}, vm.overcommit_memory=1 in {s.SYSCTL_PATH}")
    put(sysctl, s.SYSCTL_PATH)
    if kernel:
        sysctl.skipped = "the file only: applying it is " + kernel
    else:
        op(sysctl, server.sysctl, name="swappiness", key="vm.swappiness", value=s.SWAPPINESS)
        op(sysctl, server.sysctl, name="overcommit", key="vm.overcommit_memory", value=1)
    steps.append(sysctl)

    upgrades = _Step("upgrades", "unattended security upgrades, daily")
    put(upgrades, s.AUTO_UPGRADES_PATH)
    steps.append(upgrades)

    logs = _Step("logs", "journald at most 200 MB; Docker's json-file logs 3 x 10 MB per container")
    journald = put(logs, s.JOURNALD_PATH)
    if not no_services:
        follow(logs, "restart journald", "systemctl restart systemd-journald", journald)
    steps.append(logs)

    time = _Step("time", "chrony keeping the clock", skipped=no_services)
    if not no_services:
        op(time, ops_.unit_running, name="chrony running", unit="chrony")
    steps.append(time)

    firewall = _Step("firewall", "nftables: inbound TCP 22, 80, 443 and UDP 443 (HTTP/3) only")
    nft = put(firewall, s.NFTABLES_PATH)
    dropin = put(firewall, s.NFTABLES_DROPIN_PATH)
    if kernel:
        firewall.skipped = "the file only: loading it is " + kernel
    else:
        follow(firewall, "load firewall", f"nft -f {s.NFTABLES_PATH}", nft)
        op(firewall, ops_.nft_table_loaded, name="firewall loaded", path=s.NFTABLES_PATH, table="inet aistack")
        if systemd:
            follow(firewall, "reload units", "systemctl daemon-reload", dropin)
            op(firewall, ops_.unit_running, name="nftables at boot", unit="nftables")
    steps.append(firewall)

    agent = _Step("ops-agent", f"Google Cloud Ops Agent {s.OPS_AGENT_VERSION} (metrics and logs for Cloud Monitoring)")
    if spec.ops_agent:
        op(agent, ops_.ops_agent, name="ops agent", package=s.OPS_AGENT_PACKAGE, script_url=s.OPS_AGENT_SCRIPT_URL,
           version=s.OPS_AGENT_VERSION)  # fmt: skip
    else:
        agent.skipped = "--no-ops-agent"
    steps.append(agent)
    return steps


def _results(steps: list[_Step], applied: bool) -> list[StepResult]:
    out = []
    for step in steps:
        if applied:
            changed = any(m.did_change() for m in step.metas)
            status = "changed" if changed else "ok"
        else:
            status = "would change" if any(m.will_change for m in step.metas) else "ok"
        if step.skipped and status == "ok" and not step.metas:
            status = "skipped"
        out.append(StepResult(step.name, step.what, status, step.skipped))
    return out


def _failure(steps: list[_Step], capture: _LogCapture) -> str:
    for step in steps:
        for meta in step.metas:
            if meta.is_complete() and meta.did_error():
                stderr = [line for line in meta.stderr_lines if line.strip()]
                why = stderr[-1] if stderr else (capture.messages[-1] if capture.messages else "a command failed")
                return f"{step.name}: {why}"
    return capture.messages[-1] if capture.messages else "an operation failed"


def run_spec(target: HostTarget, spec: s.HostSpec, action: str, dry_run: bool) -> HostReport:
    """Given a target, a spec and check or prepare, return the report. Raise HostError as run_host_prepare does."""
    apply = action == "prepare" and not dry_run
    with _quiet_pyinfra() as capture:
        state, host = _connect(target)
        try:
            try:
                distro = _probe(host, ". /etc/os-release && echo $ID $VERSION_CODENAME")
                if distro != f"debian {s.DEBIAN_CODENAME}":
                    raise HostError(f"{target.label} runs {distro or 'an unknown system'}; ops host wants Debian 12 (bookworm)")
                container = _in_container(host)
                steps = _plan(state, host, target, spec, container, apply)
            except PyinfraError as exc:
                raise HostError(f"cannot read the state of {target.label}: {_fact_reason(exc, capture)}") from exc
            if apply:
                try:
                    run_ops(state)
                except PyinfraError as exc:
                    raise HostError(f"prepare failed on {target.label} at {_failure(steps, capture)}") from exc
        finally:
            host.disconnect()
    return HostReport(target.label, action, dry_run, container, _results(steps, apply))


def run_host_check(
    settings: Settings,
    ssh: str | None = None,
    *,
    port: int = 22,
    key: Path | None = None,
    known_hosts: Path | None = None,
    ops_agent: bool = True,
) -> HostReport:
    """Given the Settings and the target (--ssh USER@HOST, None: this machine), return what prepare would change.

    report.ok is True when nothing would. Raise HostError if the target is malformed, the host cannot be
    reached or logged in to, or is not Debian 12; ConfigError if the memory budget's files are malformed.
    """
    target = parse_target(ssh, port, key, known_hosts)
    return run_spec(target, host_spec(settings, ops_agent=ops_agent), "check", dry_run=True)


def run_host_prepare(
    settings: Settings,
    ssh: str | None = None,
    *,
    port: int = 22,
    key: Path | None = None,
    known_hosts: Path | None = None,
    ops_agent: bool = True,
    dry_run: bool = False,
) -> HostReport:
    """Given the Settings and the target, bring the host to the spec; return what changed (dry_run: what would).

    Raise HostError as run_host_check does, or naming the part and the command's error when an operation fails.
    """
    target = parse_target(ssh, port, key, known_hosts)
    return run_spec(target, host_spec(settings, ops_agent=ops_agent), "prepare", dry_run=dry_run)
