"""Consumer group coordinator (placeholder until the groups work lands).

The broker calls these hooks; the groups issue fills them in.
"""

from __future__ import annotations


class GroupCoordinator:
    def __init__(self, broker) -> None:
        self.broker = broker

    def handlers(self) -> dict:
        """Extra request handlers: {Api: async handler(conn, header, payload) -> Response}."""
        return {}

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def leadership_changed(self, replica) -> None:
        """A replica of ``__consumer_offsets`` gained or lost leadership on this broker."""

    def on_commit(self, replica, old_hw: int, new_hw: int) -> None:
        """Records in [old_hw, new_hw) of a ``__consumer_offsets`` partition were committed."""
