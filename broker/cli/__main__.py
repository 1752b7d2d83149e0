"""``python -m strata.broker.cli``: the same command group as the ``strata`` script."""

from strata.broker.cli.main import main

main()
