"""Fixtures the integration modules share: one running 3-broker cluster per module.

A module that needs a cluster set up differently defines its own ``cluster`` fixture,
which takes precedence over this one."""

from __future__ import annotations

import pytest

from strata.client.admin import AdminClient
from tests.integration.cluster import LocalCluster


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    c = LocalCluster(root=tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]), n=3)
    with c:
        c.wait_ready()
        yield c


@pytest.fixture(scope="module")
def admin(cluster):
    a = AdminClient(cluster.bootstrap)
    yield a
    a.close()
