"""Consumer groups: the coordinator, the group state machine, and the ``__consumer_offsets``
record formats (see ``docs/groups.md``)."""
