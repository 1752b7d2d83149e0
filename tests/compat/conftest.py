"""Fixtures of the Kafka compatibility tests: the target clusters and the reference reader.

Tests marked ``compat`` run only when their scope is selected (``--compat-scope``, see
:mod:`tests.compat.options`): a plain ``pytest`` (``make test``) keeps the ones marked
``compat_subset`` and deselects the rest, which ``make compat`` runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.compat.drivers import Client
from tests.compat.options import selected_targets
from tests.compat.reference import Reference
from tests.compat.targets import Target, start_target, target_class

#: The client matrix runs on three nodes, as a production cluster would.
MATRIX_NODES = 3


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compat: Kafka client compatibility (make compat)")
    config.addinivalue_line("markers", "compat_subset: the part of the compat tests make test runs")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--compat-scope") == "full":
        return
    kept, dropped = [], []
    for item in items:
        out_of_scope = item.get_closest_marker("compat") and not item.get_closest_marker("compat_subset")
        (dropped if out_of_scope else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # The client matrix runs against each selected target; the differential tests compare
    # each selected target (as subject) with a single-node Apache Kafka.
    for fixture in ("kafka_target", "diff_subject"):
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, selected_targets(metafunc.config), indirect=True,
                                 scope="module")  # fmt: skip


def need_target(name: str) -> None:
    """A target that cannot start here (no Apache Kafka install) fails, with the command
    that installs it: a missing cluster is never a skip."""
    missing = target_class(name).missing()
    if missing is not None:
        pytest.fail(missing, pytrace=False)


def need_client(client: Client) -> None:
    missing = client.missing()
    if missing is not None:
        pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="module")
def kafka_target(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:  # fmt: skip
    """A running 3-node cluster of the kind the test is parametrized with."""
    name = request.param
    need_target(name)
    target = start_target(name, tmp_path_factory.mktemp(f"{name}-matrix"), MATRIX_NODES)
    try:
        yield target
    finally:
        target.stop()


@pytest.fixture(scope="module")
def reference(kafka_target: Target) -> Iterator[Reference]:
    ref = Reference(kafka_target.bootstrap)
    try:
        yield ref
    finally:
        ref.close()
