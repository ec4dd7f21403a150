"""ops.doctor.rules.compose_schema: the compose file's structure, decided on the parsed data.

`docker compose config` itself runs in tests/integration/test_doctor_tools.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ops.doctor.rules.compose_schema import REQUIRED_SERVICES, rejection_reason, structure_findings
from ops.stack import Stack


def stack(extra: dict[str, Any] | None = None, **services: Any) -> Stack:
    """A stack with every required service (image only), the given ones replacing or adding, and extra top-level keys."""
    data: dict[str, Any] = {"services": {name: {"image": f"{name}:1.0"} for name in sorted(REQUIRED_SERVICES)}}
    for name, spec in services.items():
        if spec is None:
            del data["services"][name.replace("_", "-")]
        else:
            data["services"][name.replace("_", "-")] = spec
    data.update(extra or {})
    return Stack(Path("docker-compose.vps.yml"), "", data)


# case -> (stack, the errors' messages)
CASES: dict[str, tuple[Stack, list[str]]] = {
    "complete": (stack(), []),
    "allowed top-level keys": (stack({"name": "aistack", "networks": {}, "volumes": {}, "x-logging": {}, "version": "3"}), []),
    "a built service": (stack(observer={"build": "."}), []),
    "long-syntax depends_on": (stack(litellm={"image": "l:1", "depends_on": {"redis": {"condition": "service_healthy"}}}), []),
    "an unknown top-level key": (stack({"servics": {}}), ["unknown top-level key 'servics'"]),
    "a required service missing": (stack(qdrant=None), ["service 'qdrant' is missing: the stack is incomplete"]),
    "two missing, in order": (
        stack(redis=None, langfuse_web=None),
        [
            "service 'langfuse-web' is missing: the stack is incomplete",
            "service 'redis' is missing: the stack is incomplete",
        ],
    ),
    "neither image nor build": (stack(n8n={"restart": "unless-stopped"}), ["service 'n8n' has neither image nor build"]),
    "an empty service": (stack(n8n={}), ["service 'n8n' has neither image nor build"]),
    "depends on an unknown service": (
        stack(litellm={"image": "l:1", "depends_on": ["db"]}),
        ["service 'litellm' depends on unknown service 'db'"],
    ),
    "long-syntax depends on an unknown service": (
        stack(litellm={"image": "l:1", "depends_on": {"db": {"condition": "service_started"}}}),
        ["service 'litellm' depends on unknown service 'db'"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_structure_is_checked(case: str) -> None:
    given, messages = CASES[case]
    findings = structure_findings(given)
    assert [f.message for f in findings] == messages
    assert {(f.rule, f.severity) for f in findings} <= {("compose-schema", "error")}


REJECTED = "validating docker-compose.vps.yml: services.litellm Additional property enviroment is not allowed"
UNDEFINED = 'service "n8n" refers to undefined network edge2'


@pytest.mark.parametrize(
    ("code", "output", "reason"),
    [(15, "", "15"), (1, REJECTED, REJECTED), (1, "WARN[0000] obsolete\n" + UNDEFINED, UNDEFINED)],
    ids=["no output", "one line", "its last line"],
)
def test_a_refusal_is_named_by_its_last_line(code: int, output: str, reason: str) -> None:
    assert rejection_reason(code, output) == reason
