"""The ``strata`` command line: the broker (``broker start``), the dev supervisor
(``dev``, in :mod:`.dev`), and the client commands (``produce``/``consume`` in
:mod:`.client`; ``topic``/``group``/``cluster`` in :mod:`.admin`).

``strata.broker.cli:main`` is the console script; ``python -m strata.broker.cli`` runs the
same group (how tests and the dev supervisor start brokers).
"""

from strata.broker.cli.main import main

__all__ = ["main"]
