"""`ops doctor`: check the whole stack definition without Docker.

Each rule is one module in ``ops.doctor.rules`` with ``NAME``,
``DESCRIPTION`` and ``check(ctx) -> list[Finding]``; ``RULES`` lists them and
``run_doctor`` runs them all against one DoctorContext.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, Protocol

from ops import tools
from ops.config import Settings
from ops.errors import ConfigError
from ops.memory import MemoryReport, memory_report
from ops.secrets import DERIVED, GENERATED, generate_secrets, is_placeholder
from ops.stack import Stack, load_stack

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str


@dataclass
class DoctorContext:
    """What every rule reads: the settings, the parsed stack, and the external programs, looked for when a rule asks.

    With programs False the rules decide on the files alone: caddy and docker
    compose are neither looked for nor run (the unit tier, docs/TESTING.md).
    """

    settings: Settings
    programs: bool = True

    @cached_property
    def caddy(self) -> str | None:
        """The caddy the caddyfile rule runs, or None (not found, or programs off)."""
        return tools.caddy() if self.programs else None

    @cached_property
    def compose(self) -> list[str] | None:
        """The Compose v2 argv the compose-schema rule runs, or None (not found, or programs off)."""
        return tools.docker_compose() if self.programs else None

    @cached_property
    def stack_or_error(self) -> Stack | ConfigError:
        try:
            return load_stack(self.settings.compose_file)
        except ConfigError as exc:
            return exc

    @property
    def stack(self) -> Stack | None:
        loaded = self.stack_or_error
        return loaded if isinstance(loaded, Stack) else None

    @cached_property
    def check_env(self) -> dict[str, str]:
        """The effective env with every missing or placeholder secret replaced by a generated one.

        Validators (caddy, compose) need well-formed values; the secrets rule
        is the one that reports placeholders.
        """
        env = dict(self.settings.effective_env)
        fresh = generate_secrets()
        for name in [*GENERATED, *DERIVED]:
            if is_placeholder(env.get(name, "")):
                env[name] = fresh[name]
        return env


class Rule(Protocol):
    NAME: str
    DESCRIPTION: str

    def check(self, ctx: DoctorContext) -> list[Finding]: ...


@dataclass
class DoctorReport:
    findings: list[Finding] = field(default_factory=list)
    memory: MemoryReport | None = None
    rules: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "rules": self.rules,
            "findings": [f.__dict__ for f in self.findings],
            "memory": self.memory.to_dict() if self.memory else None,
        }


def run_doctor(settings: Settings, only: list[str] | None = None, programs: bool = True) -> DoctorReport:
    """Given Settings, run every rule (or those named in only) and return the report.

    programs False skips what only the real caddy and docker compose can tell
    (their validation), and runs no program. Raise ConfigError if only names an unknown rule.
    """
    from ops.doctor.rules import RULES

    selected = RULES
    if only:
        unknown = sorted(set(only) - {r.NAME for r in RULES})
        if unknown:
            raise ConfigError(f"unknown doctor rule(s): {', '.join(unknown)}; known: {', '.join(r.NAME for r in RULES)}")
        selected = [r for r in RULES if r.NAME in only]
    ctx = DoctorContext(settings, programs)
    report = DoctorReport(rules=[r.NAME for r in selected])
    for rule in selected:
        report.findings.extend(rule.check(ctx))
    if ctx.stack is not None:
        try:
            report.memory = memory_report(ctx.stack, settings)
        except ConfigError:
            report.memory = None  # the memory rule has reported why
    return report
