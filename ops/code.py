"""`ops code`: a coding task routed by routing-rules.yaml, run in OpenCode on that model through the gateway.

Given a task, choose the model group the way `ops route` does (``cheap`` for fixes and typos, ``smart``
for refactors and reviews, the rest by the same rules) or take ``--model``; write an OpenCode config
that offers the gateway as its only provider (``@ai-sdk/openai-compatible``, baseURL ``OPS_GATEWAY_URL``
+ ``/v1``) into a private temporary directory, never into the repository; and start OpenCode on that
model. The key reaches OpenCode in its environment, never in a file or on screen.

Which key: LiteLLM's database is off by default (docker-compose.litellm-db.yml turns it on). Off,
virtual keys do not exist, so OpenCode uses the master key and the per-deployment daily budgets of
litellm-config.yaml (spend in Redis) carry the stop. On, OpenCode gets its own virtual key with the
same daily budget, created once through LiteLLM's ``/key/generate``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ops import tools
from ops.config import Settings, check_url
from ops.errors import ConfigError, OpsError, ServiceError
from ops.gateway.litellm_config import deployments, load_config
from ops.gateway.routing import Route, load_rules

PROVIDER = "aistack"  # OpenCode's provider id for the gateway, as in clients/opencode/opencode.json
KEY_FILE = "gateway.key"  # beside the config, mode 600, read by {file:...}: not in OpenCode's environment, which its
# shell tool hands to every command the model runs (an `env` would put the key in the model's context)
KEY_REF = "{file:%s}"  # filled with the key file's absolute path when written
KEY_ALIAS = "opencode"
LITELLM_DB_OVERRIDE = "docker-compose.litellm-db.yml"
DEFAULT_GATEWAY = "http://127.0.0.1:4000"
OPENCODE_IN_PROJECT = Path("clients") / "opencode" / "node_modules" / ".bin" / "opencode"  # `make clients`
OVERRIDE_RULE = "--model"


class CodeError(OpsError):
    """`ops code` cannot start: an unknown model group, an empty task, no OpenCode, a key the gateway refused."""


@dataclass(frozen=True)
class Gateway:
    """The gateway as ops reaches it: its base URL (without /v1) and the master key from vps.env."""

    url: str
    master_key: str = field(repr=False)

    @property
    def openai_base(self) -> str:
        return f"{self.url}/v1"


@dataclass(frozen=True)
class GatewayKey:
    """The key OpenCode uses and why (the value is never shown)."""

    kind: str  # "master" or "virtual"
    note: str
    value: str = field(repr=False)


def gateway_of(settings: Settings) -> Gateway:
    """Given Settings, return the gateway: OPS_GATEWAY_URL (default 127.0.0.1:4000) and LITELLM_MASTER_KEY.

    Raise ConfigError if vps.env is missing, its master key is empty or not sk-, or the URL is malformed.
    """
    url = (settings.effective_env.get("OPS_GATEWAY_URL") or DEFAULT_GATEWAY).rstrip("/")
    check_url("OPS_GATEWAY_URL", url, ("http", "https"), DEFAULT_GATEWAY)
    if not settings.env_file_present:
        raise ConfigError(f"{settings.env_file} not found; create it with `ops secrets init`")
    key = settings.env.get("LITELLM_MASTER_KEY", "")
    if not key.startswith("sk-"):
        raise ConfigError(f"LITELLM_MASTER_KEY in {settings.env_file} is empty or does not start with sk-")
    return Gateway(url, key)


def groups_of(settings: Settings) -> list[str]:
    """Given Settings, return the model groups of litellm-config.yaml in order. Raise ConfigError if malformed."""
    return [d.group for d in deployments(load_config(settings.litellm_config))]


def choose_model(settings: Settings, task: str, model: str | None = None) -> Route:
    """Given a task and an optional --model, return the model group, the reason and the rule.

    The rules are routing-rules.yaml's, as `ops route` applies them. Raise CodeError if the task is empty
    or model is not a model group of litellm-config.yaml (naming the known ones).
    """
    if not task.strip():
        raise CodeError("the task is empty: say what OpenCode should do, e.g. ops code 'Fix the typo in README.md'")
    groups = groups_of(settings)
    if model is not None:
        if model not in groups:
            raise CodeError(f"--model {model!r} is not a model group of litellm-config.yaml; known: {', '.join(groups)}")
        return Route(model, "chosen with --model", OVERRIDE_RULE)
    return load_rules(settings.routing_rules, set(groups)).route(task)


def daily_budget_usd(settings: Settings) -> float:
    """Given Settings, return the gateway's daily budget: the sum of the deployments' max_budget per 1d.

    Raise ConfigError if no deployment states one.
    """
    total = sum(
        float(d.params["max_budget"])
        for d in deployments(load_config(settings.litellm_config))
        if d.params.get("budget_duration") == "1d" and isinstance(d.params.get("max_budget"), int | float)
    )
    if total <= 0:
        raise ConfigError(f"{settings.litellm_config.name} states no daily budget (max_budget with budget_duration: 1d)")
    return total


def litellm_db_on(settings: Settings) -> bool:
    """Given Settings, return whether LiteLLM runs with its database (OPS_COMPOSE_OVERRIDES names the override)."""
    return any(path.name == LITELLM_DB_OVERRIDE for path in settings.compose_overrides)


def opencode_key_value(master_key: str) -> str:
    """Given the master key, return OpenCode's virtual key: derived from it, so no file has to keep it.

    Rotating the master key rotates this one; the next `ops code` creates the new key.
    """
    digest = hmac.new(master_key.encode(), b"aistack: OpenCode's gateway key", hashlib.sha256).hexdigest()
    return f"sk-opencode-{digest[:40]}"


def key_request(key: str, groups: list[str], budget_usd: float) -> dict[str, Any]:
    """Given the key, the groups it may call and its daily budget, return the body of /key/generate.

    source: LiteLLM 1.100.5 proxy/management_endpoints/key_management_endpoints.py generate_key_fn
    (key: "Must start with 'sk-' and be at least 16 characters long"; models; max_budget;
    budget_duration "Budget is reset at the end of specified duration"), docs.litellm.ai/docs/proxy/virtual_keys
    """
    return {
        "key": key,
        "key_alias": KEY_ALIAS,
        "models": groups,
        "max_budget": budget_usd,
        "budget_duration": "1d",
        "metadata": {"created_by": "ops code"},
    }


def update_request(wanted: dict[str, Any]) -> dict[str, Any]:
    """Given the /key/generate body, return the /key/update body that brings an existing key back to it."""
    return {k: wanted[k] for k in ("key", "models", "max_budget", "budget_duration")}


def _refusal(what: str, response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    text = " ".join(str(message or response.text or "no body").split())[:300]
    return f"{what} answered {response.status_code}: {text}"


def _needs_update(info: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return (
        info.get("max_budget") != wanted["max_budget"]
        or info.get("budget_duration") != wanted["budget_duration"]
        or sorted(info.get("models") or []) != sorted(wanted["models"])
    )


def opencode_key(settings: Settings, gateway: Gateway, client: httpx.Client | None = None, create: bool = True) -> GatewayKey:
    """Given Settings and the gateway, return the key OpenCode uses.

    LiteLLM's database off (the default): the master key, the deployments' daily budgets carry the stop;
    nothing is asked of the gateway. On: OpenCode's own virtual key, looked up with /key/info and created
    with /key/generate (or brought back to the budget with /key/update) when create is true.
    Raise CodeError naming the gateway's answer if it refuses, ServiceError if it does not answer.
    """
    budget = daily_budget_usd(settings)
    if not litellm_db_on(settings):
        note = (
            "the master key: LiteLLM's database is off (the default), so there are no virtual keys; "
            f"the deployments' daily budgets (${budget:.2f} a day in all, spend in Redis) carry the stop"
        )
        return GatewayKey("master", note, gateway.master_key)
    value = opencode_key_value(gateway.master_key)
    wanted = key_request(value, groups_of(settings), budget)
    note = f"OpenCode's own key (alias {KEY_ALIAS}): ${budget:.2f} a day, reset daily by LiteLLM"
    if not create:
        return GatewayKey("virtual", note + " (looked up, or created, when OpenCode starts)", value)
    headers = {"Authorization": f"Bearer {gateway.master_key}"}
    with contextlib.ExitStack() as stack:
        http = client or stack.enter_context(httpx.Client(timeout=15))
        try:
            # the key's SHA-256, which LiteLLM takes as is (_hash_token_if_needed): the key itself stays out of
            # the gateway's access log
            token = hashlib.sha256(value.encode()).hexdigest()
            info = http.get(f"{gateway.url}/key/info", params={"key": token}, headers=headers)
            if info.status_code == 200:
                current = info.json().get("info") or {}
                if _needs_update(current, wanted):
                    answer = http.post(f"{gateway.url}/key/update", json=update_request(wanted), headers=headers)
                    if answer.status_code != 200:
                        raise CodeError(_refusal(f"the gateway's /key/update for OpenCode's key ({gateway.url})", answer))
                return GatewayKey("virtual", note, value)
            if info.status_code != 404:
                raise CodeError(
                    _refusal(
                        f"the gateway's /key/info ({gateway.url}), with {LITELLM_DB_OVERRIDE} in OPS_COMPOSE_OVERRIDES", info
                    )
                )
            created = http.post(f"{gateway.url}/key/generate", json=wanted, headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceError(f"the gateway at {gateway.url} does not answer: {exc}") from exc
    if created.status_code != 200:
        problem = _refusal(f"the gateway's /key/generate for OpenCode's key ({gateway.url})", created)
        if "already exists" in problem:  # a key made under an earlier master key holds the alias
            problem += f"; delete that key (POST /key/delete with key_aliases [{KEY_ALIAS!r}], docs/GATEWAY.md)"
        raise CodeError(problem)
    return GatewayKey("virtual", note + " (created now)", str(created.json().get("key") or value))


def opencode_config(groups: list[str], gateway: Gateway, model: str) -> dict[str, Any]:
    """Given the model groups, the gateway and the chosen group, return OpenCode's config (it holds no key).

    source: opencode.ai/docs/providers (custom provider: npm @ai-sdk/openai-compatible, options.baseURL,
    options.apiKey), opencode.ai/docs/config (variables: {file:path}; enabled_providers, small_model, share, autoupdate)
    """
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "AI stack gateway (LiteLLM)",
                "options": {"baseURL": gateway.openai_base, "apiKey": KEY_REF},
                "models": {group: {"name": group} for group in groups},
            }
        },
        "enabled_providers": [PROVIDER],  # always through the gateway: no other provider, whatever keys are set
        "model": f"{PROVIDER}/{model}",
        "small_model": f"{PROVIDER}/{'cheap' if 'cheap' in groups else model}",  # titles and summaries
        "autoupdate": False,
        "share": "disabled",
    }


def find_opencode(settings: Settings, required: bool = True) -> Path:
    """Given Settings, return OpenCode: the project's (`make clients`), else the one on PATH.

    Raise CodeError if there is neither and required (else return the bare name, for a dry run).
    """
    pinned = settings.project_dir / OPENCODE_IN_PROJECT
    if pinned.exists():
        return pinned
    found = shutil.which("opencode")
    if found is None:
        if not required:
            return Path("opencode")
        raise CodeError(
            "OpenCode not found: run `make clients` (it installs the pinned one in clients/opencode) or put opencode on PATH"
        )
    return Path(found)


def opencode_argv(program: Path, model: str, task: str, once: bool) -> list[str]:
    """Given OpenCode, the group and the task, return its command line: the TUI with the task as prompt, or `run`."""
    target = f"{PROVIDER}/{model}"
    if once:  # --title: no call to the small model to name the session
        return [str(program), "run", "--model", target, f"--title={' '.join(task.split())[:60]}", "--", task]
    return [str(program), "--model", target, f"--prompt={task}"]


@dataclass(frozen=True)
class CodePlan:
    """What `ops code` starts: the route, the gateway, which key and why, OpenCode's command and config."""

    route: Route
    gateway: Gateway
    key: GatewayKey
    argv: list[str]
    config: dict[str, Any]


def plan_code(
    settings: Settings, task: str, model: str | None, once: bool, dry_run: bool, client: httpx.Client | None = None
) -> CodePlan:
    """Given a task, return the CodePlan. Raise CodeError or ConfigError naming what stops it.

    A dry run asks nothing of the gateway (no key is looked up or created) and needs no OpenCode installed.
    """
    route = choose_model(settings, task, model)
    gateway = gateway_of(settings)
    program = find_opencode(settings, required=not dry_run)
    key = opencode_key(settings, gateway, client, create=not dry_run)
    return CodePlan(
        route,
        gateway,
        key,
        opencode_argv(program, route.model, task, once),
        opencode_config(groups_of(settings), gateway, route.model),
    )


@contextlib.contextmanager
def private_config(config: dict[str, Any], key: str) -> Iterator[Path]:
    """Write config to opencode.json and key beside it (both mode 600) in a new private (700) temp directory;
    point the config's KEY_REF at the key file; remove all on exit. Return the config's path."""
    with tempfile.TemporaryDirectory(prefix="ops-code-") as directory:
        key_file = Path(directory) / KEY_FILE
        _write_private(key_file, key)
        text = json.dumps(config, indent=2).replace(json.dumps(KEY_REF), json.dumps(KEY_REF % key_file))
        path = Path(directory) / "opencode.json"
        _write_private(path, text)
        yield path


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _child_env(base: Mapping[str, str], config: Path) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k != "OPENCODE_CONFIG_CONTENT"}  # inline config would override ours
    node = tools.node()  # the project's OpenCode installs its provider package with npm on first use
    if node is not None:
        env["PATH"] = f"{Path(node).parent}{os.pathsep}{env.get('PATH', os.defpath)}"
    env["OPENCODE_CONFIG"] = str(config)
    return env


def _wait(proc: subprocess.Popen[bytes]) -> int:
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # the terminal sent Ctrl-C to OpenCode too: it decides whether to stop
            continue


def run_code(
    settings: Settings,
    task: str,
    model: str | None = None,
    *,
    dry_run: bool = False,
    once: bool = False,
    echo: Callable[[str], None],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Given a task, route it, report the model and why through echo, and run OpenCode on it; return its exit code.

    dry_run: report and start nothing (no key is created). once: `opencode run` (answer and exit) instead
    of the TUI. env and cwd are OpenCode's (default: this process's). Raise CodeError, ConfigError or
    ServiceError naming what stops it.
    """
    plan = plan_code(settings, task, model, once, dry_run)
    route = plan.route
    why = route.reason if route.rule == OVERRIDE_RULE else f"{route.reason}; rule {route.rule}"
    echo(f"model: {route.model} ({why})")
    echo(f"gateway: {plan.gateway.openai_base}, key: {plan.key.note}")
    if dry_run:
        echo(f"would run: {shlex.join(plan.argv)}")
        echo(f"with OPENCODE_CONFIG (a private temp file, mode 600; the key in {KEY_FILE} beside it, mode 600):")
        echo(json.dumps(plan.config, indent=2))
        return 0
    with private_config(plan.config, plan.key.value) as config:
        try:
            proc = subprocess.Popen(plan.argv, env=_child_env(os.environ if env is None else env, config), cwd=cwd)
        except OSError as exc:
            raise CodeError(f"OpenCode ({plan.argv[0]}) did not start: {exc}") from exc
        with proc:
            return _wait(proc)
