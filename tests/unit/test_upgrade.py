"""`ops upgrade` planning and bad input, without a Docker engine (the upgrade itself: tests/stack/test_upgrade_on_docker.py).

Every refusal here happens before anything is stopped or written: an unknown service, a version
that is not a release tag, a downgrade, the same version, Langfuse's web and worker on different
versions. The image line compose takes the image from is the one rewritten, and only it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ops.config import load_settings
from ops.errors import ServiceError
from ops.images.reference import parse_reference
from ops.runtime.compose import Compose
from ops.upgrade import Context, UpgradeReport, upgrade_text
from ops.upgrade import app as upgrade_app
from ops.upgrade.copy import DockerCli, LocalCopy, differences, restore_copy, restore_volume
from ops.upgrade.plan import (
    KINDS,
    UpgradeError,
    check_newer,
    current_version,
    image_lines,
    kind_of,
    new_reference,
    parse_version,
    require_unchanged,
    rewritten_files,
)
from tests.conftest import REPO
from tests.unit.cli import run_ops


@pytest.mark.parametrize(
    ("tag", "numbers"),
    [("2.41.0", (2, 41, 0, 0)), ("v1.101.0", (1, 101, 0, 0)), ("18.7-trixie", (18, 7, 0, 0)), ("3.174", (3, 174, 0, 0))],
)
def test_release_tags_are_versions(tag: str, numbers: tuple[int, ...]) -> None:
    assert parse_version(tag).numbers == numbers
    assert str(parse_version(tag)) == tag


@pytest.mark.parametrize("tag", ["latest", "", "main", "2.41.0;rm -rf /", "sha256:" + "ab" * 32, "1.2.3.4.5", "v", "-1.0"])
def test_a_tag_that_is_no_release_is_refused_naming_the_option(tag: str) -> None:
    with pytest.raises(UpgradeError, match=r"^--to .* is not a release version"):
        parse_version(tag)


def test_an_unknown_service_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UpgradeError, match="it upgrades n8n, langfuse, litellm, postgres"):
        kind_of("redis")


@pytest.mark.parametrize(
    ("current", "to", "message"),
    [
        ("2.40.7", "2.39.9", "is a downgrade, which ops upgrade refuses"),
        ("2.40.7", "2.40.7", "already at 2.40.7"),
        ("18.6-trixie", "18.6-bookworm", "already at 18.6-trixie"),  # the same release on another Debian
        ("v1.100.5", "1.101.0", "tags starts with v"),
    ],
)
def test_downgrade_same_version_and_a_changed_tag_style_are_refused(current: str, to: str, message: str) -> None:
    with pytest.raises(UpgradeError, match=message):
        check_newer(KINDS["n8n"], parse_version(current), parse_version(to))


def test_newer_versions_pass() -> None:
    check_newer(KINDS["n8n"], parse_version("2.40.7"), parse_version("2.41.0"))
    check_newer(KINDS["postgres"], parse_version("18.6-trixie"), parse_version("18.10-trixie"))  # numbers, not text


def test_the_winning_image_line_is_rewritten_alone_keeping_its_comment(tmp_path: Path) -> None:
    main = tmp_path / "docker-compose.vps.yml"
    shutil.copy2(REPO / "docker-compose.vps.yml", main)
    override = tmp_path / "override.yml"
    override.write_text(  # compose's own YAML tags, which YAML loaders refuse, do not stop it
        "services:\n  litellm:\n    image: 'ghcr.io/berriai/litellm:v1.100.5'   # pinned here\n"
        "    ports: !override\n      - 127.0.0.1:4000:4000\n"
    )
    lines = image_lines((main, override), ("n8n", "litellm"))
    assert (lines["n8n"].path, lines["litellm"].path) == (main, override)  # the last file setting it wins
    to = parse_version("2.41.0")
    texts = rewritten_files({"n8n": lines["n8n"]}, {"n8n": new_reference(lines["n8n"].ref, to)})
    before, after = main.read_text().splitlines(), texts[main].splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [
        (
            "    image: n8nio/n8n:2.40.7   # source: n8n release 2.40.7 (run here from npm, tests/integration)",
            "    image: n8nio/n8n:2.41.0   # source: n8n release 2.40.7 (run here from npm, tests/integration)",
        )
    ]
    quoted = rewritten_files({"litellm": lines["litellm"]}, {"litellm": "ghcr.io/berriai/litellm:v1.101.0"})
    assert "    image: 'ghcr.io/berriai/litellm:v1.101.0'   # pinned here\n    ports: !override\n" in quoted[override]


def test_a_pinned_digest_is_dropped_with_the_old_tag() -> None:
    ref = parse_reference("n8nio/n8n:2.40.7@sha256:" + "ab" * 32)
    assert new_reference(ref, parse_version("2.41.0")) == "n8nio/n8n:2.41.0"


def test_langfuse_web_and_worker_on_different_versions_are_refused(tmp_path: Path) -> None:
    compose = tmp_path / "c.yml"
    compose.write_text(
        "services:\n  langfuse-web:\n    image: langfuse/langfuse:3.174.1\n"
        "  langfuse-worker:\n    image: langfuse/langfuse-worker:3.170.0\n"
    )
    kind = KINDS["langfuse"]
    with pytest.raises(UpgradeError, match="must be on one version"):
        current_version(kind, image_lines((compose,), kind.image_services))


def test_a_service_without_an_image_line_is_named(tmp_path: Path) -> None:
    compose = tmp_path / "c.yml"
    compose.write_text("services:\n  n8n:\n    build: .\n")
    with pytest.raises(UpgradeError, match=r"no `image:` line for n8n in c\.yml"):
        image_lines((compose,), ("n8n",))


def test_table_differences_name_added_missing_and_changed_tables() -> None:
    before = {"public.a": ["2", "10"], "public.b": ["1", "5"], "ops.journal": ["3", "1"]}
    after = {"public.a": ["3", "11"], "public.c": ["0", "0"], "ops.journal": ["4", "2"]}
    assert differences(before, after) == ["public.b (missing)", "public.c (added)", "public.a (2 rows before, 3 after)"]
    assert differences(before, {**before, "ops.journal": ["9", "9"]}) == []  # ops's own journal moves on: not data


class _NoAccess:
    """Postgres access that fails the test if a restore reaches it."""

    def psql(self) -> object:
        raise AssertionError("the restore dropped a database")

    def command(self, *args: str) -> object:
        raise AssertionError(f"the restore ran {args}")


def _written_copy(tmp_path: Path) -> LocalCopy:
    copy = LocalCopy(tmp_path / "copy", databases={"n8n": {"public.a": ["1", "x"]}}, volumes={"n8n-data": "p_n8n-data"})
    for name, text in (("databases/n8n.dump", b"PGDMP archive"), ("volumes/n8n-data.tar", b"tar bytes")):
        (copy.directory / name).parent.mkdir(parents=True, exist_ok=True)
        (copy.directory / name).write_bytes(text)
        copy.digests[name] = hashlib.sha256(text).hexdigest()
    copy.save()
    return copy


def test_the_copy_records_each_archives_digest_and_checks_as_written(tmp_path: Path) -> None:
    copy = _written_copy(tmp_path)
    assert json.loads((copy.directory / "copy.json").read_text())["sha256"] == copy.digests
    copy.check()  # as written: restorable


@pytest.mark.parametrize("damage", ["missing", "changed"])
def test_a_rollback_refuses_a_damaged_copy_before_it_drops_anything(tmp_path: Path, damage: str) -> None:
    # an operator clearing .ops/upgrades for space while the new version ran must not cost the old data too
    copy = _written_copy(tmp_path)
    dump = copy.directory / "databases" / "n8n.dump"
    if damage == "missing":
        dump.unlink()
    else:
        dump.write_text("PGDMP archiv")
    with pytest.raises(ServiceError, match=rf"databases/n8n\.dump \({damage}.*nothing was dropped or emptied"):
        restore_copy(copy, _NoAccess(), DockerCli(), "unused")  # type: ignore[arg-type]


class _DockerWithUser(DockerCli):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, ...]] = []

    def run(self, *args: str, **kwargs: object) -> str:
        self.calls.append(args)
        return "3f2a9c\n" if args[0] == "ps" else ""


def test_a_volume_a_running_container_uses_is_not_emptied(tmp_path: Path) -> None:
    docker = _DockerWithUser()
    with pytest.raises(ServiceError, match=r"volume p_clickhouse-data is in use by running container.*3f2a9c: not emptied"):
        restore_volume(docker, "img", "p_clickhouse-data", tmp_path / "x.tar")
    assert docker.calls == [("ps", "-q", "--filter", "volume=p_clickhouse-data")]


def _context(project: Path) -> Context:
    settings = load_settings(project)
    config = {"services": {s: {"image": "n8nio/n8n:2.40.7"} for s in ("n8n",)}, "volumes": {"n8n-data": {}}}
    return Context(settings, Compose.for_settings(settings), DockerCli(), config, 300.0)


def test_dry_run_plans_the_line_and_the_steps_without_docker(project: Path) -> None:
    report = upgrade_app.run(_context(project), KINDS["n8n"], parse_version("2.41.0"), dry_run=True)
    assert report.outcome == "dry-run" and report.ok
    assert [(i["file"], i["image"], i["new"]) for i in report.images] == [
        ("docker-compose.vps.yml", "n8nio/n8n:2.40.7", "n8nio/n8n:2.41.0")
    ]
    assert any("copy n8n, n8n-data to .ops/upgrades/" in step for step in report.steps)
    assert "n8nio/n8n:2.40.7" in (project / "docker-compose.vps.yml").read_text()  # nothing written


def test_downgrade_is_refused_before_anything_runs(project: Path) -> None:
    with pytest.raises(UpgradeError, match=r"n8n 2\.40\.7 -> 2\.4\.0 is a downgrade"):
        upgrade_app.run(_context(project), KINDS["n8n"], parse_version("2.4.0"), dry_run=False)


def test_an_image_compose_does_not_take_from_the_line_is_refused(project: Path) -> None:
    ctx = _context(project)
    ctx.config["services"]["n8n"]["image"] = "n8nio/n8n:2.39.0"  # say, a variable in the line
    with pytest.raises(UpgradeError, match="ops upgrade changes a literal image line only"):
        upgrade_app.run(ctx, KINDS["n8n"], parse_version("2.41.0"), dry_run=True)


def test_a_service_whose_profile_is_off_is_named(project: Path) -> None:
    ctx = _context(project)
    with pytest.raises(UpgradeError, match="langfuse-web, langfuse-worker is not in the stack as configured"):
        upgrade_app.run(ctx, KINDS["langfuse"], parse_version("3.200.0"), dry_run=True)


def test_the_cli_says_bad_input_in_one_line(project: Path) -> None:
    unknown = run_ops("upgrade", "qdrant", "--to", "1.16.0", "--project-dir", str(project), "--yes")
    assert unknown.returncode == 2 and "ops upgrade does not know 'qdrant'" in unknown.stderr
    malformed = run_ops("upgrade", "n8n", "--to", "latest", "--project-dir", str(project), "--yes")
    assert malformed.returncode == 2 and "--to 'latest' is not a release version" in malformed.stderr
    timeout = run_ops("upgrade", "n8n", "--to", "2.41.0", "--timeout", "0", "--project-dir", str(project), "--yes")
    assert timeout.returncode == 2 and "--timeout must be more than 0" in timeout.stderr


def test_the_cli_refuses_a_downgrade_in_one_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = json.dumps({"services": {"n8n": {"image": "n8nio/n8n:2.40.7"}}})  # what `docker compose config` says

    def compose_config(self: Compose, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert args == ("config", "--format", "json")  # nothing else may run before the refusal
        return subprocess.CompletedProcess(["docker", "compose", *args], 0, config, "")

    monkeypatch.setattr(Compose, "run", compose_config)
    ran = run_ops("upgrade", "n8n", "--to", "2.39.0", "--dry-run", "--project-dir", str(project))
    assert ran.returncode == 2
    assert "n8n 2.40.7 -> 2.39.0 is a downgrade, which ops upgrade refuses" in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1


def test_the_report_reads_as_lines() -> None:
    report = UpgradeReport("n8n", "2.40.7", "2.41.0", "new image", "rolled-back", error="the health gate failed: n8n down")
    report.rollback_steps, report.rollback_seconds, report.copy = ["restored database n8n"], 12.3, "/p/.ops/upgrades/x"
    text = upgrade_text(report)
    assert text.splitlines()[0] == "n8n 2.40.7 -> 2.41.0 (new image): rolled-back"
    assert "rolled back in 12 s:" in text and "pre-upgrade copy: /p/.ops/upgrades/x" in text
    assert not report.ok


def test_a_compose_file_edited_while_the_image_was_pulled_is_not_overwritten(tmp_path: Path) -> None:
    compose = tmp_path / "docker-compose.vps.yml"
    compose.write_text("services:\n  n8n:\n    image: n8nio/n8n:2.40.7\n")
    planned = {compose: compose.read_text()}
    assert require_unchanged(planned) == planned
    compose.write_text(compose.read_text() + "  redis:\n    image: redis:8.2\n")  # a git pull meanwhile
    with pytest.raises(UpgradeError, match=r"docker-compose\.vps\.yml changed since the upgrade read it.*nothing was upgraded"):
        require_unchanged(planned)
    assert "redis:8.2" in compose.read_text()
