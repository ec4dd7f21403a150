from pathlib import Path

import pytest

from ops.envfile import format_env_value, parse_env_text, read_env_file, write_private_file
from ops.errors import ConfigError


def test_parses_comments_quotes_and_export() -> None:
    text = "# comment\n\nA=1\nexport B=two words # trailing\nC='$2b$12$abc'\nD=\"x\\ny\"\nE=\n"
    assert parse_env_text(text) == {"A": "1", "B": "two words", "C": "$2b$12$abc", "D": "x\ny", "E": ""}


def test_malformed_line_names_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"vps.env:2: expected KEY=value"):
        parse_env_text("A=1\nthis is not a variable\n", "vps.env")


def test_unterminated_quote_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unterminated ' quote"):
        parse_env_text("A='open\n")


def test_round_trip_of_values_that_need_quotes() -> None:
    values = {"HASH": "$2b$12$Zz/abc.def", "PLAIN": "abc123", "SPACE": "a b", "EMPTY": ""}
    text = "".join(f"{k}={format_env_value(v)}\n" for k, v in values.items())
    assert parse_env_text(text) == values


def test_write_private_file_is_mode_600_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "vps.env"
    write_private_file(target, "A=1\n")
    assert target.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        write_private_file(target, "A=2\n")
    assert read_env_file(target) == {"A": "1"}


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_env_file(tmp_path / "missing.env")
