"""A broker that breaks safety on purpose: ``python -m tests.fault.unsafe_broker SWITCH -- ARGS``.

The fault suite must prove it notices a broker that loses acknowledged writes, so it needs
such a broker. The switches live here, under ``tests/``, not in the product: each one sets
a documented test hook in the broker's code (never set in production), then runs the
ordinary ``strata broker start`` with the remaining arguments.

Switches:

* ``ack-before-commit``: ``acks=all`` writes are acknowledged once the leader appended them,
  before a majority has (``strata.broker.replication.replica.UNSAFE_ACK_BEFORE_COMMIT``).
"""

from __future__ import annotations

import sys

SWITCHES = ("ack-before-commit",)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in SWITCHES or "--" not in argv:
        sys.exit(f"usage: python -m tests.fault.unsafe_broker {{{'|'.join(SWITCHES)}}} -- BROKER-START-ARGS")
    switches, rest = argv[: argv.index("--")], argv[argv.index("--") + 1:]
    from strata.broker.replication import replica

    for s in switches:
        if s == "ack-before-commit":
            replica.UNSAFE_ACK_BEFORE_COMMIT = True
        else:
            sys.exit(f"unknown switch {s!r}; known: {', '.join(SWITCHES)}")
    from strata.broker.cli import main as cli

    sys.argv = ["strata", "broker", "start", *rest]
    cli()


if __name__ == "__main__":
    main(sys.argv[1:])
