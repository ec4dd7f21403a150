"""Every command docs/RUNBOOK.md and README.md tell an operator to type exists, with its flags (issue 13 item 5).

The shell blocks of both pages, and the inline `ops ...`, `make ...` and `docker compose ...` spans of
the runbook, are split into commands the way a shell would (quotes, `&&`, `|`, `\\` continuations):

- `ops ...` is parsed by the click CLI itself (ops.cli.main): the subcommand path and every option
  must be accepted by that command, arguments converted to their types;
- `make X` names a target of the Makefile;
- `docker compose ...` either names the stack's file and env file (`-f docker-compose.vps.yml
  --env-file vps.env`) or names neither: then the project directory must make plain `docker compose`
  find them, which `ops secrets init` does (.env links to vps.env, which sets COMPOSE_FILE; the stack
  tier runs plain compose there for real: tests/stack/test_plain_compose_on_docker.py).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from ops.cli import main
from ops.config import load_settings
from ops.envfile import read_env_file
from ops.secrets import PLAIN_COMPOSE, add_missing_secrets, init_secrets, link_dotenv

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = REPO / "docs" / "RUNBOOK.md"
README = REPO / "README.md"
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "((", "))", ";;", "|&"}
REDIRECTS = {">", ">>", "<", "<<", "<<<", ">&", "<&", "&>", "&>>", ">|"}
PREFIXES = {"sudo", "nohup", "time", "exec", "env"}
# In prose, `ops upgrade` or `ops backup` names a command (its options still checked); a block is typed whole.
NAMES_ONLY = ("Missing argument", "Missing option", "`ops ")
STACK_FLAGS = {"-f": "docker-compose.vps.yml", "--env-file": "vps.env"}
COMPOSE_COMMANDS = {
    *[
        "attach",
        "build",
        "config",
        "cp",
        "create",
        "down",
        "events",
        "exec",
        "images",
        "kill",
        "logs",
        "ls",
        "pause",
        "port",
        "ps",
        "pull",
        "push",
        "restart",
        "rm",
        "run",
    ],
    *["scale", "start", "stats", "stop", "top", "unpause", "up", "version", "wait", "watch"],
}


# --- reading the pages -------------------------------------------------------------------------------


def shell_blocks(text: str) -> Iterator[tuple[int, str]]:
    """Given markdown, yield (line number, text) of each fenced shell block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^\s*(```+|~~~+)\s*([\w-]*)", lines[i])
        if not fence:
            i += 1
            continue
        start, marker, lang = i + 1, fence.group(1), fence.group(2).lower()
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append(lines[i])
            i += 1
        i += 1
        if lang in SHELL_LANGS:
            if lang == "console":
                body = [line.strip()[2:] for line in body if line.strip().startswith("$ ")]
            yield start + 1, "\n".join(body)


def inline_commands(text: str) -> Iterator[tuple[int, str]]:
    """Given markdown, yield (line number, span) of each inline code span that is an ops, make or compose command."""
    outside = re.sub(r"^\s*(```+|~~~+).*?^\s*\1\s*$", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.M | re.S)
    for match in re.finditer(r"(?<!`)`([^`\n]+)`(?!`)", outside):
        span = match.group(1).strip()
        if re.match(r"^(?:sudo\s+)?(?:[A-Z_]+=\S*\s+)*(?:\.venv/bin/)?(?:ops|make|docker\s+compose)\s+\S", span):
            yield outside.count("\n", 0, match.start()) + 1, span


def split_commands(script: str) -> Iterator[list[str]]:
    """Given shell text, yield each simple command's words: assignments, sudo and redirections left out."""
    script = re.sub(r"\\\n", " ", script)
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError as exc:  # an unbalanced quote: the page shows something no shell runs
            raise AssertionError(f"cannot parse {line!r} as shell: {exc}") from exc
        words: list[str] = []
        skip_next = False
        for token in [*tokens, ";"]:
            if skip_next:
                skip_next = False
                continue
            if token in SEPARATORS:
                if words:
                    yield words
                words = []
                continue
            if token in REDIRECTS:
                if words and words[-1].isdigit():
                    words.pop()  # 2>/dev/null
                skip_next = True
                continue
            if not words and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token) or token in PREFIXES):
                continue
            words.append(token)


def page_commands(path: Path, inline: bool) -> list[tuple[str, list[str], bool]]:
    """Given a page, return (where, words, in a code block) for each command it shows."""
    text = path.read_text(encoding="utf-8")
    found = []
    for line, block in shell_blocks(text):
        found += [(f"{path.name}:{line}", words, True) for words in split_commands(block)]
    if inline:
        for line, span in inline_commands(text):
            found += [(f"{path.name}:{line}", words, False) for words in split_commands(span)]
    return found


# --- what each kind of command must be ---------------------------------------------------------------


def ops_problem(args: list[str]) -> str | None:
    """Given the words after `ops`, return why the CLI would refuse them, or None when it accepts them."""
    command: click.Command = main
    try:
        ctx = main.make_context("ops", list(args))
        while isinstance(command, click.Group):
            rest = [*ctx._protected_args, *ctx.args]
            if not rest:
                return f"`ops {' '.join(args)}` names a group, not a command"
            name, sub, rest = command.resolve_command(ctx, rest)
            assert name is not None and sub is not None
            ctx = sub.make_context(name, rest, parent=ctx)
            command = sub
    except click.exceptions.Exit:
        return None  # --help, --version
    except click.exceptions.NoArgsIsHelpError:
        return f"`ops {' '.join(args)}` names a group, not a command"
    except click.ClickException as exc:
        return exc.format_message()
    return None


def makefile_targets(makefile: Path) -> set[str]:
    """Given a Makefile, return its targets, with $(VAR) and $(addprefix P,LIST) expanded."""
    text = makefile.read_text(encoding="utf-8")
    variables: dict[str, str] = {}

    def expand(value: str) -> str:
        def one(match: re.Match[str]) -> str:
            inner = match.group(1)
            if inner.startswith("addprefix "):
                prefix, _, items = inner[len("addprefix ") :].partition(",")
                return " ".join(prefix + item for item in expand(items).split())
            return expand(variables.get(inner, "")) if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", inner) else ""

        previous = None
        while previous != value:
            previous, value = value, re.sub(r"\$\(([^()]*(?:\([^()]*\)[^()]*)*)\)", one, value)
        return value

    targets: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("\t", "#")) or not line.strip():
            continue
        assignment = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*[:?+]?=\s*(.*)$", line)
        if assignment:
            variables[assignment.group(1)] = assignment.group(2)
            continue
        rule = re.match(r"^([^:#=]+?)\s*::?(?!=)", expand(line))
        if rule:
            targets.update(rule.group(1).split())
    return targets


def compose_problem(args: list[str]) -> str | None:
    """Given the words after `docker compose`, return why it would not reach the stack, or None."""
    given: dict[str, list[str]] = {}
    subcommand = None
    i = 0
    while i < len(args):
        word = args[i]
        flag, eq, value = word.partition("=")
        if flag in ("-f", "--file", "--env-file", "-p", "--project-name", "--profile", "--project-directory"):
            value = value if eq else (args[i + 1] if i + 1 < len(args) else "")
            given.setdefault("-f" if flag == "--file" else flag, []).append(value)
            i += 1 if eq else 2
            continue
        if not word.startswith("-"):
            subcommand = word
            break
        i += 1
    shown = f"`docker compose {' '.join(args)}`"
    if subcommand not in COMPOSE_COMMANDS:
        return f"{shown}: {subcommand!r} is no docker compose command"
    named = {flag: given.get(flag, []) for flag in STACK_FLAGS}
    if any(named.values()) and named != {flag: [value] for flag, value in STACK_FLAGS.items()}:
        return f"{shown} names files, but not exactly -f docker-compose.vps.yml --env-file vps.env"
    return None


def command_problem(words: list[str], targets: set[str]) -> str | None:
    """Given a command's words, return why it does not exist as shown, or None (programs not ours pass)."""
    # N stands for a slice's number (`make slice-N`, `ops slice N --rollback`): checked as slice 1
    program, args = os.path.basename(words[0]), [re.sub(r"(^|-)N$", r"\g<1>1", word) for word in words[1:]]
    if program == "ops":
        return ops_problem(args)
    if program == "make":
        missing = [a for a in args if not a.startswith("-") and "=" not in a and a not in targets]
        return f"make has no target {', '.join(missing)}" if missing else None
    if program == "docker" and args[:1] == ["compose"]:
        return compose_problem(args[1:])
    if program == "docker-compose":
        return "docker-compose is Compose v1 (Debian's package): write `docker compose`"
    if program == "ssh" or (program == "gcloud" and args[:2] == ["compute", "ssh"]):
        # the remote command, `ssh vm 'cd /opt/aistack && .venv/bin/ops ...'`: each of its commands checked
        remote = [
            problem for arg in args if " " in arg for sub in split_commands(arg) if (problem := command_problem(sub, targets))
        ]
        return "; ".join(remote) or None
    return None


def problems(path: Path, inline: bool) -> list[str]:
    """Given a page, return one line per command in it that does not exist as shown."""
    targets = makefile_targets(REPO / "Makefile")
    return [
        f"{where}: {' '.join(words)}: {problem}"
        for where, words, block in page_commands(path, inline)
        if (problem := command_problem(words, targets)) and (block or not problem.startswith(NAMES_ONLY))
    ]


# --- the pages ---------------------------------------------------------------------------------------


def test_every_command_of_the_runbook_exists_with_its_flags() -> None:
    assert problems(RUNBOOK, inline=True) == []


def test_every_command_of_the_readme_exists_with_its_flags() -> None:
    assert problems(README, inline=False) == []


def test_the_pages_show_commands_at_all() -> None:
    """The parser finds the runbook's commands: an empty list would pass the tests above for nothing."""
    programs = {os.path.basename(words[0]) for _, words, _ in page_commands(RUNBOOK, inline=True)}
    assert {"ops", "make", "docker"} <= programs


# --- the checker itself ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("ops backup restore ID --into live --yes", None),
        ("OPS_BACKUP_AGE_IDENTITY=~/k ops backup drill --keep", None),
        ("ops runbook exec redis -- sh -c 'redis-cli info memory'", None),
        ("ops backup restore ID --into elsewhere", "'elsewhere' is not one of"),
        ("ops backup run --sauce postgres", "No such option '--sauce'"),
        ("ops backups list", "No such command 'backups'"),
        ("ops slice N --apply", None),
        ("ops slice M --apply", "'M' is not a valid integer"),
        ("ops backup", "names a group"),
        ("make slice-3 && make demo", None),
        ("make slice-13", "no target slice-13"),
        ("make slice-N", None),
        ("docker compose exec -T postgres psql -U postgres", None),
        ("docker compose --env-file vps.env -f docker-compose.vps.yml up -d --wait", None),
        ("docker compose -f docker-compose.vps.yml ps", "not exactly"),
        ("docker compose --env-file=other.env -f docker-compose.vps.yml ps", "not exactly"),
        ("docker compose ... up -d --remove-orphans", "'...' is no docker compose command"),
        ("docker-compose up -d", "Compose v1"),
        ("gcloud compute instances stop vm && ops doctor --rule gcs-access 2>/dev/null", None),
        ("ssh vm 'cd /opt/aistack && .venv/bin/ops backup drill --identity -' < ~/key", None),
        ("ssh vm 'cd /opt/aistack && sudo .venv/bin/ops backup drill --identiy -' < ~/key", "No such option '--identiy'"),
        ("gcloud compute ssh vm -- 'make slice-14'", "no target slice-14"),
    ],
)
def test_the_checker_tells_a_real_command_from_a_wrong_one(tmp_path: Path, line: str, expected: str | None) -> None:
    page = tmp_path / "PAGE.md"
    page.write_text(f"```bash\n{line}\n```\n")
    found = problems(page, inline=False)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0], found


def test_inline_spans_and_continuations_are_read(tmp_path: Path) -> None:
    page = tmp_path / "PAGE.md"
    page.write_text(
        "Run `ops slice 1 --aply` then `ops.journal` (a module, not a command), with `ops upgrade`.\n\n"
        "```bash\nops backup restore ID \\\n  --into live --yse   # comment: --nothing\n```\n"
    )
    found = problems(page, inline=True)
    assert [f.split(": ")[0] for f in found] == ["PAGE.md:4", "PAGE.md:1"]
    assert "--yse" in found[0] and "--aply" in found[1]


# --- plain `docker compose` in the project directory -------------------------------------------------


def test_secrets_init_makes_plain_docker_compose_find_the_stack(project: Path) -> None:
    """Compose reads .env in the project directory: it is vps.env, which names the stack's compose file."""
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    dotenv = project / ".env"
    assert dotenv.is_symlink() and os.readlink(dotenv) == "vps.env"
    assert read_env_file(dotenv)["COMPOSE_FILE"] == "docker-compose.vps.yml"
    assert read_env_file(dotenv)["COMPOSE_PROJECT_NAME"]
    assert (project / read_env_file(dotenv)["COMPOSE_FILE"]).is_file()


def test_add_missing_gives_an_older_vps_env_plain_compose_too(project: Path) -> None:
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    (project / ".env").unlink()
    kept = [line for line in settings.env_file.read_text().splitlines() if not line.startswith("COMPOSE_FILE=")]
    settings.env_file.write_text("\n".join(kept) + "\n")
    assert add_missing_secrets(settings.env_file) == list(PLAIN_COMPOSE)
    assert read_env_file(project / ".env")["COMPOSE_FILE"] == "docker-compose.vps.yml"


def test_an_env_file_of_the_users_is_left_alone(project: Path) -> None:
    (project / ".env").write_text("MINE=1\n")
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    assert not link_dotenv(settings.env_file)
    assert (project / ".env").read_text() == "MINE=1\n"


# --- the links to the subsystem pages ----------------------------------------------------------------


def anchors(page: Path) -> set[str]:
    """Given a markdown page, return its headings' anchors as GitHub makes them (lowercase, punctuation dropped)."""
    headings = re.findall(r"^#+\s+(.*)$", page.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def broken_links(page: Path) -> list[str]:
    """Given a markdown page, return each relative link whose file or section does not exist."""
    broken = []
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://")):
            continue
        linked = (page.parent / target).resolve() if target else page
        if not linked.is_file():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}#{anchor}: no such section")
    return broken


def test_every_link_of_the_runbook_reaches_a_page_and_its_section() -> None:
    assert broken_links(RUNBOOK) == []


def test_a_broken_link_is_named(tmp_path: Path) -> None:
    (tmp_path / "HOST.md").write_text("# Host\n\n## The VM on GCP: `gcloud`\n")
    page = tmp_path / "PAGE.md"
    page.write_text("[a](HOST.md#the-vm-on-gcp-gcloud) [b](HOST.md#the-vm) [c](GONE.md) [d](https://x.org/#y)\n")
    assert broken_links(page) == ["HOST.md#the-vm: no such section", "GONE.md: no such file"]
