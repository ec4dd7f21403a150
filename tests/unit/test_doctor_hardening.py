"""ops doctor against what a first real `up` would hit (issue #10, items 1-6, 21, 24).

Each case breaks a copy of the project back to a defect the review found (or
one of its kind) and expects the rule that names it; the repo as shipped
passes every rule. The images' own sources are cited in the rules. What needs
the real caddy or docker compose is in tests/integration/test_doctor_tools.py.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from ops import secrets as secrets_module
from ops.config import load_settings
from ops.doctor import run_doctor
from ops.profiles import enable_events_when_ready, enable_profile
from ops.secrets import generate_secrets, init_secrets, is_placeholder
from tests.conftest import REPO
from tests.fakes.server import ThreadedServer
from tests.unit.test_doctor import edit, with_env

COMPOSE = "docker-compose.vps.yml"
LITELLM = "litellm-config.yaml"
CLICKHOUSE = "clickhouse/low-memory.xml"
MERGE_TREE = re.compile(r"\s*<merge_tree>.*?</merge_tree>", re.S)
# what a user fills in before `up`: names, address, one key, a bucket
FILLED = "\n".join(
    [
        "ACME_EMAIL=ops@aistack.dev",
        "N8N_DOMAIN=n8n.aistack.dev",
        "LANGFUSE_DOMAIN=",  # Langfuse not on this VM: Caddy serves no name for it
        "LITELLM_DOMAIN=llm.aistack.dev",
        "OPENROUTER_API_KEY=sk-or-v1-0123456789abcdef",
        "OPS_BACKUP_BUCKET=aistack-backups-1234",
        "OPS_BACKUP_GCS_ENDPOINT=http://127.0.0.1:9",  # an emulator: the VM's scopes are not in play
    ]
)


def drop_merge_tree(project: Path) -> None:
    path = project / CLICKHOUSE
    text = path.read_text()
    assert MERGE_TREE.search(text), "test setup: no <merge_tree> block"
    path.write_text(MERGE_TREE.sub("", text))


def old_redis_command(project: Path) -> None:
    edit(COMPOSE, "exec docker-entrypoint.sh redis-server", "exec redis-server")(project)


def steps(*breakers: Callable[[Path], None]) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        for breaker in breakers:
            breaker(project)

    return apply


def with_litellm_database(project: Path) -> None:
    shutil.copy2(REPO / "docker-compose.litellm-db.yml", project / "docker-compose.litellm-db.yml")
    with_env(FILLED + "\nOPS_COMPOSE_OVERRIDES=docker-compose.litellm-db.yml")(project)


def daily_provider_budgets(project: Path) -> None:
    path = project / LITELLM
    path.write_text(path.read_text().replace("time_period: 30d", "time_period: 1d"))


# case -> (breaker, rule, message in an error)
BROKEN: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # item 1: the server's startup sanity check of the merge pool
    "clickhouse without merge_tree block": (
        drop_merge_tree,
        "clickhouse",
        "number_of_free_entries_in_pool_to_execute_mutation is 20 (the default), more than background_pool_size",
    ),
    "clickhouse threshold over the pool": (
        edit(
            CLICKHOUSE,
            "<number_of_free_entries_in_pool_to_lower_max_size_of_merge>2<",
            "<number_of_free_entries_in_pool_to_lower_max_size_of_merge>5<",
        ),
        "clickhouse",
        "number_of_free_entries_in_pool_to_lower_max_size_of_merge is 5 (low-memory.xml)",
    ),
    "clickhouse ratio lowered": (
        edit(
            CLICKHOUSE, "<background_merges_mutations_concurrency_ratio>2<", "<background_merges_mutations_concurrency_ratio>0.5<"
        ),
        "clickhouse",
        "= 2 x 0.5 = 1",
    ),
    "clickhouse xml broken": (edit(CLICKHOUSE, "</clickhouse>", "</clickhous>"), "clickhouse", "not valid XML"),
    # item 2: the deprecated main-* tag
    "litellm main- tag": (
        edit(COMPOSE, "image: ghcr.io/berriai/litellm:v1.100.5", "image: ghcr.io/berriai/litellm:main-v1.100.5"),
        "image-contracts",
        "'main-v1.100.5' is a deprecated main-* tag: use the release tag 'v1.100.5'",
    ),
    # item 3: the worker listens on the container id
    "langfuse-worker without HOSTNAME": (
        edit(
            COMPOSE,
            "      HOSTNAME: 0.0.0.0\n      NODE_OPTIONS: --max-old-space-size=768",
            "      NODE_OPTIONS: --max-old-space-size=768",
        ),
        "image-contracts",
        "service 'langfuse-worker' (langfuse/langfuse-worker:3.174.1): listens on $HOSTNAME",
    ),
    "langfuse-web without HOSTNAME": (
        edit(COMPOSE, "      HOSTNAME: 0.0.0.0   # Next.js", "      X_HOSTNAME: 0.0.0.0   # Next.js"),
        "image-contracts",
        "service 'langfuse-web'",
    ),
    # the rest of the kind: healthchecks and entrypoints against the images' docs and source
    "n8n healthcheck before migrations": (
        edit(COMPOSE, "http://127.0.0.1:5678/healthz/readiness", "http://127.0.0.1:5678/healthz"),
        "image-contracts",
        "probe /healthz/readiness",
    ),
    "redis command skips the entrypoint": (old_redis_command, "image-contracts", "never drops to the redis user"),
    "caddy healthcheck on another admin port": (
        edit("Caddyfile", "admin localhost:2019", "admin localhost:2020"),
        "image-contracts",
        "the Caddyfile's admin API listens on localhost:2020",
    ),
    "caddy admin off": (edit("Caddyfile", "admin localhost:2019", "admin off"), "image-contracts", "turns it off"),
    # item 4: Langfuse sized from its needs does not fit an e2-medium; the doctor names the fixes
    "langfuse profile on 4 GB": (
        with_env(
            FILLED + "\nCOMPOSE_PROFILES=langfuse\nLANGFUSE_HOST=http://langfuse-web:3000\nLANGFUSE_GCS_BUCKET=aistack-lf-1234"
        ),
        "memory",
        "profile core+langfuse: limits total 7392 MB, over the budget of 3424 MB (4096 MB VM less 672 MB for the OS "
        "and Docker); fix: send traces to Langfuse Cloud instead",
    ),
    "langfuse profile names a VM size": (
        with_env(
            FILLED + "\nCOMPOSE_PROFILES=langfuse\nLANGFUSE_HOST=http://langfuse-web:3000\nLANGFUSE_GCS_BUCKET=aistack-lf-1234"
        ),
        "memory",
        "a VM with at least 8064 MB (VM_MEMORY_MB; an e2-standard-2 has 8192); or SWAP_ALLOWANCE_MB=3968 after measuring",
    ),
    "swap allowance bigger than the VM": (
        with_env(FILLED + "\nSWAP_ALLOWANCE_MB=5000"),
        "memory",
        "the stack would live in swap",
    ),
    # item 4b: the database is an opt-in whose memory counts
    "litellm database on 4 GB": (
        with_litellm_database,
        "memory",
        "profile core: limits total 3872 MB, over the budget of 3424 MB",
    ),
    "monthly stop only in max_budget": (daily_provider_budgets, "gateway", "have no 30-day budget"),
    "30-day budgets over the monthly stop": (
        edit(LITELLM, "budget_limit: 22.0", "budget_limit: 40.0"),
        "gateway",
        "the 30-day provider budgets add up to $73, over the monthly stop litellm_settings.max_budget $55",
    ),
    "traces to a langfuse that does not run": (
        with_env(FILLED + "\nLANGFUSE_HOST=http://langfuse-web:3000"),
        "gateway",
        "LANGFUSE_HOST points at the langfuse-web container, which only profile langfuse starts",
    ),
    # item 24: the template's values are placeholders too
    "template n8n domain": (with_env(""), "secrets", "N8N_DOMAIN is a placeholder ('n8n.example.com')"),
    "template litellm domain": (with_env(""), "secrets", "LITELLM_DOMAIN is a placeholder ('llm.example.com')"),
    "template e-mail": (with_env(""), "secrets", "ACME_EMAIL is a placeholder ('admin@example.com')"),
    "no provider key": (with_env(""), "secrets", "no provider key: set at least one of OPENAI_API_KEY"),
    "no backup bucket": (with_env(""), "secrets", "OPS_BACKUP_BUCKET is empty"),
    "template langfuse domain with the profile": (
        with_env("COMPOSE_PROFILES=langfuse\nLANGFUSE_DOMAIN=langfuse.example.com"),
        "secrets",
        "LANGFUSE_DOMAIN is a placeholder ('langfuse.example.com')",
    ),
    "no langfuse domain with the profile": (
        with_env("COMPOSE_PROFILES=langfuse"),
        "secrets",
        "LANGFUSE_DOMAIN is a placeholder ('')",
    ),
    "template langfuse bucket with the profile": (
        with_env("COMPOSE_PROFILES=langfuse"),
        "secrets",
        "LANGFUSE_GCS_BUCKET is a placeholder ('my-project-langfuse')",
    ),
    "provider key placeholder": (with_env(FILLED + "\nOPENAI_API_KEY=sk-..."), "secrets", "OPENAI_API_KEY is a placeholder"),
}


def test_repo_passes_the_new_rules() -> None:
    report = run_doctor(load_settings(REPO), ["clickhouse", "image-contracts", "gateway", "memory"])
    assert [f for f in report.findings if f.severity == "error"] == []


def test_filled_in_vps_env_passes_every_rule(project: Path) -> None:
    with_env(FILLED)(project)
    report = run_doctor(load_settings(project), programs=False)
    assert [f for f in report.findings if f.severity == "error"] == []
    # what is left is the memory rule telling which profiles would not fit this VM
    assert {(f.rule, f.message.split(" would need")[0]) for f in report.findings} == {
        ("memory", "profile core+langfuse"),
        ("memory", "profile core+events+langfuse"),
    }


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_copy_is_named(project: Path, case: str) -> None:
    breaker, rule, message = BROKEN[case]
    breaker(project)
    report = run_doctor(load_settings(project), [rule])
    errors = [f.message for f in report.findings if f.rule == rule and f.severity == "error"]
    assert any(message in m for m in errors), errors


def test_langfuse_profile_fits_an_8_gb_vm(project: Path) -> None:
    with_env(
        FILLED
        + "\nCOMPOSE_PROFILES=langfuse\nVM_MEMORY_MB=8192\nLANGFUSE_HOST=http://langfuse-web:3000\nLANGFUSE_GCS_BUCKET=aistack-lf-1"
    )(project)
    report = run_doctor(load_settings(project), ["memory", "gateway"])
    assert report.ok, report.findings
    assert report.memory is not None and report.memory.total_mb == 7392


def test_measured_swap_allowance_lets_a_profile_fit_and_is_flagged(project: Path) -> None:
    with_litellm_database(project)
    with (project / "vps.env").open("a") as env:
        env.write("SWAP_ALLOWANCE_MB=512\n")
    report = run_doctor(load_settings(project), ["memory"])
    assert report.ok, report.findings
    assert report.memory is not None and report.memory.budget_mb == 3424 + 512 and report.memory.total_mb == 3872
    assert any("keep a swap file at least that big" in f.message for f in report.findings if f.severity == "warning")


# --- item 5: the VM's service account, read from a contract fake of the GCE metadata server ---


def metadata_app(scopes: list[str]) -> web.Application:
    """The two metadata keys the rule reads; answers need the Metadata-Flavor header, as GCE's do.

    Skips: every other key, recursive and wait-for-change queries, ETags.
    """

    async def key(request: web.Request) -> web.Response:
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing required header")
        body = {"email": "123-compute@developer.gserviceaccount.com", "scopes": "\n".join(scopes) + "\n"}
        return web.Response(text=body[request.match_info["key"]], headers={"Metadata-Flavor": "Google"})

    app = web.Application()
    app.router.add_get("/computeMetadata/v1/instance/service-accounts/default/{key}", key)
    return app


@pytest.fixture
def metadata(request: pytest.FixtureRequest) -> Iterator[str]:
    with ThreadedServer(metadata_app(request.param)) as server:
        yield server.url.removeprefix("http://")


def gcs_env(host: str, profiles: str = "") -> str:
    return "\n".join(
        [
            FILLED.replace("OPS_BACKUP_GCS_ENDPOINT=http://127.0.0.1:9", "OPS_BACKUP_GCS_ENDPOINT="),
            f"OPS_GCE_METADATA_HOST={host}",
            f"COMPOSE_PROFILES={profiles}",
            "LANGFUSE_GCS_BUCKET=aistack-lf-1234",
        ]
    )


READ_ONLY = ["https://www.googleapis.com/auth/devstorage.read_only", "https://www.googleapis.com/auth/logging.write"]
READ_WRITE = ["https://www.googleapis.com/auth/devstorage.read_write"]
CLOUD_PLATFORM = ["https://www.googleapis.com/auth/cloud-platform"]


@pytest.mark.parametrize("metadata", [READ_ONLY], indirect=True)
def test_default_vm_scopes_are_refused_for_backups(project: Path, metadata: str) -> None:
    with_env(gcs_env(metadata))(project)
    report = run_doctor(load_settings(project), ["gcs-access"])
    errors = [f.message for f in report.findings if f.severity == "error"]
    assert len(errors) == 1 and "has no GCS write scope (it has devstorage.read_only, logging.write)" in errors[0]
    assert "the backups would get 403" in errors[0] and "set-service-account --scopes=cloud-platform" in errors[0]


@pytest.mark.parametrize("metadata", [READ_WRITE], indirect=True)
def test_langfuse_media_urls_need_the_cloud_platform_scope(project: Path, metadata: str) -> None:
    with_env(gcs_env(metadata, "langfuse"))(project)
    report = run_doctor(load_settings(project), ["gcs-access"])
    errors = [f.message for f in report.findings if f.severity == "error"]
    assert errors == [
        "the VM's service account 123-compute@developer.gserviceaccount.com lacks the cloud-platform scope: Langfuse "
        'cannot sign media URLs (iam.serviceAccounts.signBlob); fix: docs/RUNBOOK.md, "The VM\'s service account" '
        "(gcloud compute instances set-service-account --scopes=cloud-platform)"
    ]


@pytest.mark.parametrize("metadata", [CLOUD_PLATFORM], indirect=True)
def test_cloud_platform_scope_passes(project: Path, metadata: str) -> None:
    with_env(gcs_env(metadata, "langfuse"))(project)
    assert run_doctor(load_settings(project), ["gcs-access"]).findings == []


def test_off_gce_the_scopes_are_a_warning_naming_the_runbook(project: Path) -> None:
    with_env(gcs_env("127.0.0.1:9"))(project)  # nothing listens on the discard port
    findings = run_doctor(load_settings(project), ["gcs-access"]).findings
    assert [f.severity for f in findings] == ["warning"]
    assert "no GCE metadata server answers: the backups use the VM's service account" in findings[0].message


# --- review of issue #10, items 10 and 14: placeholders of every kind, the Langfuse name Caddy serves, where
# traces go ---

PLACEHOLDERS = [
    "REPLACE_ME",
    "replace-me",
    "replace this",
    "sk-xxxx...",
    "sk-xxxxxxxxxxxxxxxxxxxxxxxx",
    "sk-proj-XXXXXXXXXXXXXXXX",
    "XXXXXXXX",
    "your-api-key",
    "YOUR_KEY_HERE",
    "yourkey",
    "sk-yourkey123",
    "paste-your-key-here",
    "<openai key>",
    "changeme",
    "TODO: fill in",
    "...",
]
NOT_PLACEHOLDERS = [
    "sk-or-v1-0123456789abcdef",
    "sk-ant-api03-Zk3f9Qx7wLmN2pR8",
    "AIzaSyD-4kq8ZtX0vB7nM1pL",
    "sk-proj-4bXq9TzLw2Rk8VfN",
    "pk-lf-1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081",
    "aistack-backups-1234",
    "max-xenon-2026",  # an x-word is not a run of x's
]


@pytest.mark.parametrize("value", PLACEHOLDERS)
def test_template_values_are_placeholders(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize("value", NOT_PLACEHOLDERS)
def test_real_looking_values_are_not_placeholders(value: str) -> None:
    assert not is_placeholder(value)


def test_generated_secrets_are_never_placeholders() -> None:
    for _ in range(50):
        assert [name for name, value in generate_secrets().items() if is_placeholder(value)] == []


def test_a_random_value_that_reads_as_a_placeholder_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # token_urlsafe can, rarely, start with "todo": doctor would refuse the value init had just written
    draws = iter(["TodoK3v9-Qm2xLp7Zr4Wn8Ys", "-xxxxK3v9Qm2xLp7Zr4Wn8Ys", "K3v9-Qm2xLp7Zr4Wn8YsTodo"])
    monkeypatch.setitem(secrets_module.GENERATED, "BASIC_AUTH_PASSWORD", lambda: next(draws))
    assert generate_secrets()["BASIC_AUTH_PASSWORD"] == "K3v9-Qm2xLp7Zr4Wn8YsTodo"


CLOUD_KEYS = "LANGFUSE_PUBLIC_KEY=pk-lf-1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081\nLANGFUSE_SECRET_KEY=sk-lf-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
# case -> (vps.env lines over FILLED, rule, message in an error)
PLACEHOLDER_SETTINGS: dict[str, tuple[str, str, str]] = {
    "provider key of x's": ("OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxx", "secrets", "OPENAI_API_KEY is a placeholder"),
    "provider key REPLACE_ME": ("ANTHROPIC_API_KEY=REPLACE_ME", "secrets", "ANTHROPIC_API_KEY is a placeholder"),
    "provider key your-key-here": ("GEMINI_API_KEY=your-key-here", "secrets", "GEMINI_API_KEY is a placeholder"),
    "e-mail at yourdomain.com": ("ACME_EMAIL=you@yourdomain.com", "secrets", "ACME_EMAIL is a placeholder"),
    "e-mail at domain.com": ("ACME_EMAIL=admin@domain.com", "secrets", "ACME_EMAIL is a placeholder"),
    "n8n at yourdomain.com": ("N8N_DOMAIN=n8n.yourdomain.com", "secrets", "N8N_DOMAIN is a placeholder"),
    "litellm at my-domain.com": ("LITELLM_DOMAIN=llm.my-domain.com", "secrets", "LITELLM_DOMAIN is a placeholder"),
    "n8n at domain.tld": ("N8N_DOMAIN=n8n.domain.tld", "secrets", "N8N_DOMAIN is a placeholder"),
    "litellm at a .local name": ("LITELLM_DOMAIN=llm.local", "secrets", "LITELLM_DOMAIN is a placeholder"),
    "backup bucket REPLACE_ME": ("OPS_BACKUP_BUCKET=REPLACE_ME", "secrets", "OPS_BACKUP_BUCKET is a placeholder"),
    # the Caddyfile serves LANGFUSE_DOMAIN whenever it is set: ACME would retry for the template's name forever
    "template langfuse domain without the profile": (
        "LANGFUSE_DOMAIN=langfuse.example.com",
        "secrets",
        "LANGFUSE_DOMAIN is a placeholder ('langfuse.example.com')",
    ),
    "langfuse domain without the profile": (
        "LANGFUSE_DOMAIN=langfuse.aistack.dev",
        "secrets",
        "LANGFUSE_DOMAIN is set but profile langfuse is off: Caddy would get a certificate for it",
    ),
    # item 10: the generated keys are for a Langfuse on this VM; Cloud would receive every prompt and refuse it
    "cloud with the generated keys": (
        "LANGFUSE_HOST=https://cloud.langfuse.com",
        "gateway",
        "LANGFUSE_HOST is https://cloud.langfuse.com, outside this VM, but LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY "
        "are the keys `ops secrets init` generated for a self-hosted Langfuse",
    ),
    "cloud with one generated key": (
        "LANGFUSE_HOST=https://us.cloud.langfuse.com\nLANGFUSE_PUBLIC_KEY=pk-lf-1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081",
        "gateway",
        "but LANGFUSE_SECRET_KEY is the key `ops secrets init` generated",
    ),
    "langfuse host without a scheme": (
        "LANGFUSE_HOST=cloud.langfuse.com\n" + CLOUD_KEYS,
        "gateway",
        "LANGFUSE_HOST must be a URL like https://cloud.langfuse.com",
    ),
}


@pytest.mark.parametrize("case", sorted(PLACEHOLDER_SETTINGS))
def test_placeholder_setting_is_named(project: Path, case: str) -> None:
    lines, rule, message = PLACEHOLDER_SETTINGS[case]
    with_env(FILLED + "\n" + lines)(project)
    errors = [f.message for f in run_doctor(load_settings(project), [rule]).findings if f.severity == "error"]
    assert any(message in m for m in errors), errors


@pytest.mark.parametrize(
    "lines",
    [
        "",  # no tracing (the default)
        "LANGFUSE_HOST=https://cloud.langfuse.com\n" + CLOUD_KEYS,  # a cloud project's keys
        "LANGFUSE_DOMAIN=langfuse.aistack.dev\nCOMPOSE_PROFILES=langfuse\nVM_MEMORY_MB=8192\n"
        "LANGFUSE_HOST=http://langfuse-web:3000\nLANGFUSE_GCS_BUCKET=aistack-lf-1",  # self-hosted, generated keys
    ],
    ids=["no tracing", "cloud", "self-hosted"],
)
def test_where_traces_go_passes_when_consistent(project: Path, lines: str) -> None:
    with_env(FILLED + "\n" + lines)(project)
    report = run_doctor(load_settings(project), ["secrets", "gateway"])
    assert [f.message for f in report.findings if f.severity == "error"] == []


# --- review of issue #10, item 4: the observer's profile goes on with the truth repository ---


def git_repo(path: Path) -> Path:
    """Lay out what `git init` makes and git itself recognises as a repository (HEAD, objects/, refs/), without git."""
    (path / ".git" / "objects").mkdir(parents=True)
    (path / ".git" / "refs" / "heads").mkdir(parents=True)
    (path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return path


@pytest.mark.parametrize(
    ("repo", "profiles", "message"),
    [
        (True, "", "OPS_EVENTS_REPO ./truth is a git work tree but COMPOSE_PROFILES lacks events"),
        (False, "events", "COMPOSE_PROFILES has events but OPS_EVENTS_REPO ./truth is not a git work tree"),
        (True, "events", None),
        (True, "langfuse,events", None),
        (False, "", None),
    ],
)
def test_events_profile_follows_the_truth_repository(project: Path, repo: bool, profiles: str, message: str | None) -> None:
    with_env(FILLED + f"\nCOMPOSE_PROFILES={profiles}")(project)
    if repo:
        git_repo(project / "truth")
    errors = [f.message for f in run_doctor(load_settings(project), ["events"]).findings if f.severity == "error"]
    if message:
        assert len(errors) == 1 and message in errors[0], errors
    else:
        assert errors == []


def test_slice_7_turns_the_events_profile_on_once_the_repository_exists(project: Path) -> None:
    with_env(FILLED)(project)
    env_file = project / "vps.env"
    before = env_file.read_text()
    assert enable_events_when_ready(load_settings(project)) == []  # no repository yet: the observer would restart-loop
    assert env_file.read_text() == before
    git_repo(project / "truth")
    assert enable_events_when_ready(load_settings(project)) == ["vps.env: COMPOSE_PROFILES=events"]
    settings = load_settings(project)
    assert settings.profiles == ("events",) and env_file.stat().st_mode & 0o777 == 0o600
    # every other line as it was
    assert [line for line in env_file.read_text().splitlines() if not line.startswith("COMPOSE_PROFILES=")] == [
        line for line in before.splitlines() if not line.startswith("COMPOSE_PROFILES=")
    ]
    assert enable_events_when_ready(settings) == []  # idempotent
    assert run_doctor(settings, ["events"]).findings == []


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("COMPOSE_PROFILES='langfuse'", "langfuse,events"),
        ("COMPOSE_PROFILES=langfuse\nCOMPOSE_PROFILES=", "events"),  # compose reads the last one
        ("", "events"),  # an older vps.env without the variable
    ],
)
def test_enable_profile_keeps_the_others(project: Path, lines: str, expected: str) -> None:
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    text = re.sub(r"^COMPOSE_PROFILES=.*\n", "", settings.env_file.read_text(), flags=re.M)
    settings.env_file.write_text(text + lines + ("\n" if lines else ""))
    enable_profile(load_settings(project), "events")
    assert load_settings(project).env["COMPOSE_PROFILES"] == expected
    assert settings.env_file.read_text().count("COMPOSE_PROFILES=") == max(1, lines.count("COMPOSE_PROFILES="))
