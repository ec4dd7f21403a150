from pathlib import Path

import pytest

from ops.errors import ConfigError
from ops.stack import load_stack, parse_memory_mb, variables_in


@pytest.mark.parametrize(("text", "mb"), [("512M", 512), ("1g", 1024), ("1.5G", 1536), ("268435456", 256), ("64MiB", 64)])
def test_memory_sizes(text: str, mb: int) -> None:
    assert parse_memory_mb(text) == mb


def test_bad_memory_size_is_named() -> None:
    with pytest.raises(ConfigError, match="'lots' is not a size"):
        parse_memory_mb("lots")


def test_variables_with_and_without_defaults() -> None:
    found = variables_in("a: ${A}\nb: ${B:-x}\nc: $$NOT_A_VAR\nd: $D ${E:?needed}")
    assert found == {"A": False, "B": True, "D": False, "E": False}


def test_load_stack_rejects_non_mapping(tmp_path: Path) -> None:
    path = tmp_path / "compose.yml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping with a 'services' mapping"):
        load_stack(path)
