"""Raft, one group per partition: a pure state machine and its driver."""
