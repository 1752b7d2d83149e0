"""Command-line options of the Kafka compatibility tests (tests/compat).

They are declared here and imported by ``tests/conftest.py``: pytest reads options only
from the conftest files it loads at start-up, and ``tests/compat/conftest.py`` is not one
of them when pytest runs from the repository root.

``--compat-target`` picks the clusters (``strata``, ``apache-kafka`` or ``both``);
``--compat-scope`` picks the tests: ``subset`` (what ``make test`` runs, the tests marked
``compat_subset``) or ``full`` (``make compat``: the whole client matrix and the
differential suite). The target defaults to ``strata`` for the subset and ``both`` for the
full run.
"""

from __future__ import annotations

import pytest

TARGET_CHOICES = ("strata", "apache-kafka", "both")
SCOPE_CHOICES = ("subset", "full")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("compat", "Kafka client compatibility (tests/compat)")
    group.addoption("--compat-target", choices=TARGET_CHOICES, default=None,
                    help="clusters the compat tests run against (default: strata for the "
                         "subset, both for --compat-scope full)")  # fmt: skip
    group.addoption("--compat-scope", choices=SCOPE_CHOICES, default="subset",
                    help="subset: the tests marked compat_subset (make test); full: the "
                         "whole matrix and the differential suite (make compat)")  # fmt: skip


def selected_targets(config: pytest.Config) -> list[str]:
    """The cluster kinds this run tests, in a fixed order."""
    target = config.getoption("--compat-target")
    if target is None:
        target = "strata" if config.getoption("--compat-scope") == "subset" else "both"
    return ["apache-kafka", "strata"] if target == "both" else [target]
