"""LiteLLM at two replicas behind the shipped Caddyfile, on Docker (issue 13, item 6).

The bench's own compose project (ops.bench.scaling.scaling_stack): the stack's compose file with the
stand-in images, LiteLLM scaled with `docker compose up --scale litellm=2`, Caddy in front with the
shipped Caddyfile, the mock provider behind, which records the address of the replica that called it.
What is asserted is behaviour, not speed: both replicas serve one client's requests, a budget spent
through one replica stops the other too (the router's state in Redis), and with one replica stopped
Caddy still answers every request from the other.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from ops.bench.scaling import Replica, ScalingStack, scaling_stack
from ops.local.processes import wait_until
from tests.stack.conftest import StackProject

pytestmark = pytest.mark.stack
REQUESTS = 20


@pytest.fixture(scope="module")
def scaled(module_stack_project: StackProject) -> Iterator[tuple[ScalingStack, list[Replica]]]:
    with scaling_stack(module_stack_project.settings, replicas=2) as stack:
        yield stack, stack.replicas()


def test_caddy_spreads_one_clients_requests_over_both_replicas(scaled: tuple[ScalingStack, list[Replica]]) -> None:
    """One client sending one request after another (what one user does) reaches both replicas."""
    stack, replicas = scaled
    assert len({r.address for r in replicas}) == 2, replicas
    stack.mock("reset", {})
    stack.mock("behaviour", {"provider": "openai"})  # answer at once (the bench's mock runs with realistic latency)
    for i in range(REQUESTS):
        response = stack.chat(f"request {i}")
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"].endswith(f"You said: request {i}")
    served = stack.served(replicas)
    assert sum(served) == REQUESTS and all(served), served


def chat_on(replica: Replica, content: str) -> dict[str, Any]:
    """Send one chat completion to this replica alone, from inside its container; return the answer."""
    script = (
        "import json, os, sys, urllib.request as u;"
        "r = u.Request('http://127.0.0.1:4000/v1/chat/completions', data=sys.stdin.buffer.read(),"
        " headers={'Authorization': 'Bearer ' + os.environ['LITELLM_MASTER_KEY'], 'Content-Type': 'application/json'});"
        "print(u.urlopen(r, timeout=60).read().decode())"
    )
    body = json.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": content}]})
    argv = ["docker", "exec", "-i", replica.container_id, "python3", "-c", script]
    proc = subprocess.run(argv, input=body, capture_output=True, text=True, timeout=90, check=True)
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def test_a_budget_spent_through_one_replica_stops_the_other(scaled: tuple[ScalingStack, list[Replica]]) -> None:
    """The deployments' daily budgets are kept in Redis (router_settings redis_*): gpt-4's day spent through one
    replica sends the other's gpt-4 requests to the fallback too (claude-3, on Anthropic), not to OpenAI."""
    stack, replicas = scaled
    stack.mock("reset", {})
    stack.mock("behaviour", {"provider": "openai", "completion_tokens": 200_000})  # $3 at gpt-4's price: over $2 a day
    stack.mock("behaviour", {"provider": "anthropic"})  # the fallback answers at once
    spent = chat_on(replicas[0], "spend the day")
    assert spent["choices"][0]["message"]["content"].startswith("[mock openai ")

    def fallen_back() -> bool:  # each replica reads the spend from Redis about once a second (LiteLLM's budget limiter)
        answers = [chat_on(r, "after the spend")["choices"][0]["message"]["content"] for r in replicas]
        return all(a.startswith("[mock anthropic ") for a in answers)

    # without the router's state in Redis the other replica would call OpenAI for the rest of the day
    wait_until(fallen_back, 30, "both replicas to see gpt-4's spent budget")


def test_with_one_replica_stopped_caddy_still_answers(scaled: tuple[ScalingStack, list[Replica]]) -> None:
    stack, replicas = scaled
    subprocess.run(["docker", "stop", "--time", "10", replicas[0].container_id], capture_output=True, check=True)
    stack.mock("reset", {})
    stack.mock("behaviour", {"provider": "gemini"})  # gemini-2: a group whose budget the test above left unspent
    for i in range(REQUESTS):
        response = stack.chat(f"after the stop {i}", model="gemini-2")
        assert response.status_code == 200, response.text
    assert stack.served(replicas) == [0, REQUESTS]
