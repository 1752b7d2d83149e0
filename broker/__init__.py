"""The Strata broker: TCP server, Raft-replicated partitions, controller and CLI."""
