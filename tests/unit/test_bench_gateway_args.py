"""`ops bench gateway --server-args NAME=ARGS`: a server lever measured beside the same configuration."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ops.bench.gateway import parse_server_args
from ops.cli import main
from ops.errors import OpsError

NAMES = {"shipped", "minimal", "granian"}


def test_server_args_split_like_a_shell_per_configuration() -> None:
    specs = ("granian=--run_granian", "shipped=--log_config '/tmp/a b/log.yaml'")
    assert parse_server_args(specs, NAMES) == {
        "granian": ("--run_granian",),
        "shipped": ("--log_config", "/tmp/a b/log.yaml"),
    }


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("--run_granian", "takes NAME=ARGS"),
        ("granian=", "takes NAME=ARGS"),
        ("=--run_granian", "takes NAME=ARGS"),
        ("gunicorn=--run_gunicorn", "no configuration of that name (have: granian, minimal, shipped)"),
        ("granian=--log_config 'unclosed", "does not split into options"),
    ],
)
def test_a_bad_spec_is_one_sentence_naming_it(spec: str, says: str) -> None:
    with pytest.raises(OpsError, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse_server_args((spec,), NAMES)


def test_the_cli_refuses_args_for_an_unknown_configuration_before_starting_anything() -> None:
    result = CliRunner().invoke(main, ["bench", "gateway", "--server-args", "nosuch=--run_granian"])
    assert result.exit_code != 0
    assert "--server-args nosuch: no configuration of that name" in result.output
    assert "Traceback" not in result.output
