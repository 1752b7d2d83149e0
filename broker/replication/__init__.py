"""Replication: each partition's storage ``Log`` driven by its own Raft group.

Modules: :mod:`.manager` (``ReplicaManager``: opens, restarts, deletes and ticks every replica
this broker holds), :mod:`.replica` (one replica: the Raft driver and its I/O), :mod:`.raft_log`
(the storage log seen as a Raft log), :mod:`.hardstate` (term and vote on disk),
:mod:`.producer_state` (idempotent producers), :mod:`.transport` (Raft messages to peers).
"""
