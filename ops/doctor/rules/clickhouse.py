"""ClickHouse's settings pass the server's own startup check of the merge pool.

The server multiplies background_pool_size by
background_merges_mutations_concurrency_ratio and refuses to start
(BAD_ARGUMENTS) when one of three merge_tree thresholds is larger (source:
ClickHouse src/Storages/MergeTree/MergeTreeSettings.cpp, sanityCheck, called
at startup from programs/server/Server.cpp). Langfuse then never starts.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ops.doctor import DoctorContext, Finding

NAME = "clickhouse"
DESCRIPTION = "clickhouse/*.xml: every merge_tree pool threshold fits background_pool_size x the concurrency ratio"

# The server's defaults (source: ClickHouse docs, server settings background_pool_size and
# background_merges_mutations_concurrency_ratio; merge-tree settings number_of_free_entries_in_pool_*).
DEFAULT_POOL_SIZE = 16
DEFAULT_RATIO = 2.0
THRESHOLDS = {
    "number_of_free_entries_in_pool_to_execute_mutation": 20,
    "number_of_free_entries_in_pool_to_lower_max_size_of_merge": 8,
    "number_of_free_entries_in_pool_to_execute_optimize_entire_partition": 25,
}


def _number(element: ET.Element, path: Path) -> float:
    text = (element.text or "").strip()
    try:
        return float(text)
    except ValueError as exc:
        raise ValueError(f"{path.name}: <{element.tag}> is {text!r}, not a number") from exc


def check(ctx: DoctorContext) -> list[Finding]:
    directory = ctx.settings.project_dir / "clickhouse"
    files = sorted(directory.glob("*.xml"))
    if not files:
        return []
    pool, ratio = float(DEFAULT_POOL_SIZE), DEFAULT_RATIO
    merge_tree = {name: float(default) for name, default in THRESHOLDS.items()}
    replicated: dict[str, float] = {}
    where: dict[str, str] = {}
    try:
        for path in files:
            root = ET.parse(path).getroot()
            if (found := root.find("background_pool_size")) is not None:
                pool = _number(found, path)
            if (found := root.find("background_merges_mutations_concurrency_ratio")) is not None:
                ratio = _number(found, path)
            for section, target in (("merge_tree", merge_tree), ("replicated_merge_tree", replicated)):
                for name in THRESHOLDS:
                    if (found := root.find(f"{section}/{name}")) is not None:
                        target[name] = _number(found, path)
                        where[f"{section}.{name}"] = path.name
    except ET.ParseError as exc:
        return [Finding(NAME, "error", f"a ClickHouse settings file is not valid XML: {exc}")]
    except ValueError as exc:
        return [Finding(NAME, "error", str(exc))]
    tasks = int(pool * ratio)
    findings = []
    for section, values in (("merge_tree", merge_tree), ("replicated_merge_tree", {**merge_tree, **replicated})):
        for name, value in values.items():
            if value > tasks:
                origin = where.get(f"{section}.{name}") or where.get(f"merge_tree.{name}") or "the default"
                findings.append(
                    Finding(
                        NAME,
                        "error",
                        f"<{section}> {name} is {value:g} ({origin}), more than background_pool_size x "
                        f"background_merges_mutations_concurrency_ratio = {pool:g} x {ratio:g} = {tasks}: "
                        f"ClickHouse refuses to start (BAD_ARGUMENTS); set it to at most {tasks} in a <merge_tree> block",
                    )
                )
        if section == "merge_tree" and findings:
            break  # the replicated section inherits the same values: one report is enough
    return findings
