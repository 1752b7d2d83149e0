"""Raft, one group per partition: a pure state machine (no I/O, clock or randomness of its own).

Modules: :mod:`.node` (``RaftNode``, ``Ready``, ``HardState``, ``RaftConfig``; the driver loop
is in its docstring), :mod:`.messages` (wire-ready messages), :mod:`.log` (the ``RaftLog``
protocol and ``MemoryRaftLog``), :mod:`.progress` (per-follower flow control),
:mod:`.membership` (configurations and single-server changes), :mod:`.batches` (the few batch
header facts Raft needs, and test batches). ``tests/sim`` drives it under faults.
"""

from .log import MemoryRaftLog, RaftLog, Run
from .membership import ChangeKind, ConfigEntry, Membership, MembershipChange
from .messages import (
    Append,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallLogStart,
    Message,
    MsgType,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
    from_wire,
)
from .node import (
    Fault,
    HardState,
    NotLeaderError,
    ProposalDroppedError,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
)

__all__ = [
    "Append", "AppendResponse", "ChangeKind", "ConfigEntry", "Fault", "HardState", "Heartbeat",
    "HeartbeatResponse", "InstallLogStart", "Membership", "MembershipChange", "MemoryRaftLog",
    "Message", "MsgType", "NotLeaderError", "ProposalDroppedError", "RaftConfig", "RaftLog",
    "RaftNode", "Ready", "Role", "Run", "TimeoutNow", "VoteRequest", "VoteResponse", "from_wire",
]
