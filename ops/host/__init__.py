"""ops host check / prepare: a Debian 12 VM brought to what the stack needs, with pyinfra (docs/HOST.md)."""

from ops.host.run import HostReport, StepResult, run_host_check, run_host_prepare
from ops.host.target import HostError, HostTarget, parse_target

__all__ = ["HostError", "HostReport", "HostTarget", "StepResult", "parse_target", "run_host_check", "run_host_prepare"]
