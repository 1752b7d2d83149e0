"""The layout's import rules (docs/internals.md, "Which way imports point"): a module that
imports against them is the first step of a second broker hiding inside the first."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: folder -> prefixes of ``strata.*`` modules it must never import.
FORBIDDEN = {
    "client": ("strata.storage", "strata.broker"),
    "storage": ("strata.broker",),
    "broker/raft": ("strata.broker.core", "strata.broker.cluster", "strata.broker.groups",
                    "strata.broker.replication", "strata.broker.frontends", "strata.broker.cli",
                    "strata.broker.server"),
    "broker/core": ("strata.broker.frontends", "strata.broker.cli", "strata.broker.server"),
    "broker/cluster": ("strata.broker.frontends", "strata.broker.cli", "strata.broker.server"),
    "broker/groups": ("strata.broker.frontends", "strata.broker.cli", "strata.broker.server"),
    "broker/replication": ("strata.broker.frontends", "strata.broker.cli", "strata.broker.server"),
    "broker/frontends/native": ("strata.broker.frontends.kafka",),
    "broker/frontends/kafka": ("strata.broker.frontends.native",),
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_point_the_documented_way(folder: str) -> None:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"{folder} has no modules: the layout changed, update the rules and the map"
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files
        for line, name in imports_of(path)
        if name.startswith(FORBIDDEN[folder])
    ]
    assert not bad, "\n".join(bad)
