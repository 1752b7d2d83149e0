"""The sync admin client: :class:`AIOAdminClient` run on a background event loop."""

from __future__ import annotations

import datetime
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from strata.client._runtime import SLACK_S as _SLACK_S
from strata.client._runtime import start_on_own_loop
from strata.client._types import TopicPartition
from strata.client.admin.aio import AIOAdminClient
from strata.client.admin.configs import ConfigEntry, ConfigResource, NewPartitions
from strata.client.admin.types import (
    ClusterDescription,
    CreatedTopic,
    GroupDescription,
    GroupListing,
    NewTopic,
    OffsetChange,
    TopicDescription,
)

T = TypeVar("T")



class AdminClient:
    """Create, delete, list and describe topics; describe the cluster; manage groups::

    admin = AdminClient(bootstrap="127.0.0.1:9192")
    admin.create_topic("events", partitions=6, replication_factor=3)
    print(admin.describe_topic("events").to_dict())
    print(admin.describe_group("g").to_dict())
    admin.reset_offsets("g", "events", to="earliest")   # only while no consumer of g runs
    admin.close()
    """

    def __init__(self, bootstrap: str | Sequence[str] | None = None, **options: Any) -> None:
        self._core = AIOAdminClient(bootstrap, **options)
        self._timeout_s = self._core.request_timeout_s + _SLACK_S
        self._rt = start_on_own_loop(self._core, "strata-admin", self._timeout_s)

    def _run(self, coro: Coroutine[Any, Any, T], timeout_ms: int | None = None) -> T:
        limit = self._timeout_s if timeout_ms is None else timeout_ms / 1000 + _SLACK_S
        return self._rt.run(coro, limit)

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int = -1,
        configs: Mapping[str, str] | None = None,
        *,
        wait: bool = True,
        timeout_ms: int | None = None,
    ) -> CreatedTopic:
        """Create a topic (``replication_factor=-1``: the cluster's default); returns what
        was used."""
        return self._run(
            self._core.create_topic(
                name, partitions, replication_factor, configs, wait=wait, timeout_ms=timeout_ms
            ),
            timeout_ms,
        )

    def create_topics(
        self,
        topics: Iterable[NewTopic],
        *,
        wait: bool = True,
        timeout_ms: int | None = None,
        validate_only: bool = False,
    ) -> list[CreatedTopic]:
        return self._run(
            self._core.create_topics(
                list(topics), wait=wait, timeout_ms=timeout_ms, validate_only=validate_only
            ),
            timeout_ms,
        )

    def delete_topic(self, name: str, *, timeout_ms: int | None = None) -> None:
        self._run(self._core.delete_topic(name, timeout_ms=timeout_ms), timeout_ms)

    def delete_topics(self, names: Iterable[str], *, timeout_ms: int | None = None) -> None:
        self._run(self._core.delete_topics(list(names), timeout_ms=timeout_ms), timeout_ms)

    def list_topics(self, *, internal: bool = False) -> list[str]:
        return self._run(self._core.list_topics(internal=internal))

    def describe_topic(self, name: str) -> TopicDescription:
        return self._run(self._core.describe_topic(name))

    def describe_topics(self, names: Iterable[str] | None = None) -> list[TopicDescription]:
        return self._run(self._core.describe_topics(None if names is None else list(names)))

    def describe_configs(
        self, config_resources: Iterable[ConfigResource], include_synonyms: bool = False
    ) -> dict[ConfigResource, dict[str, ConfigEntry]]:
        """Configs with their values and sources (see :meth:`AIOAdminClient.describe_configs`)."""
        return self._run(self._core.describe_configs(list(config_resources), include_synonyms))

    def alter_configs(
        self, config_resources: Iterable[ConfigResource], *, validate_only: bool = False
    ) -> None:
        """Set (``key: value``) or delete (``key: None``) configs, incrementally."""
        self._run(
            self._core.alter_configs(list(config_resources), validate_only=validate_only)
        )

    def create_partitions(
        self,
        topic_partitions: Mapping[str, NewPartitions | int],
        timeout_ms: int | None = None,
        validate_only: bool = False,
        *,
        wait: bool = True,
    ) -> None:
        """Grow topics to a new total partition count (``{"events": NewPartitions(12)}``)."""
        self._run(
            self._core.create_partitions(
                dict(topic_partitions), timeout_ms, validate_only, wait=wait
            ),
            timeout_ms,
        )

    def describe_cluster(self) -> ClusterDescription:
        return self._run(self._core.describe_cluster())

    def find_coordinator(self, group: str) -> int:
        return self._run(self._core.find_coordinator(group))

    def list_groups(self) -> list[GroupListing]:
        """Every group in the cluster (each broker is asked for the groups it coordinates)."""
        return self._run(self._core.list_groups())

    def describe_group(self, group: str) -> GroupDescription:
        """Members, their partitions and committed offsets with lag (GroupIdNotFoundError)."""
        return self._run(self._core.describe_group(group))

    def delete_group(self, group: str) -> None:
        """Delete a group and its offsets; NonEmptyGroupError while it has live members."""
        self._run(self._core.delete_group(group))

    def list_group_offsets(self, group: str) -> dict[TopicPartition, int]:
        return self._run(self._core.list_group_offsets(group))

    def seek_group_offsets(
        self,
        group: str,
        topic: str,
        to: str | int | datetime.datetime | None = None,
        *,
        shift_by: int | None = None,
        partitions: Iterable[int] | None = None,
        dry_run: bool = False,
    ) -> list[OffsetChange]:
        """Move the group's offsets of ``topic`` (see :meth:`AIOAdminClient.seek_group_offsets`)."""
        return self._run(
            self._core.seek_group_offsets(
                group,
                topic,
                to,
                shift_by=shift_by,
                partitions=None if partitions is None else list(partitions),
                dry_run=dry_run,
            )
        )

    def reset_offsets(
        self,
        group: str,
        topic: str,
        to: str | int | datetime.datetime = "earliest",
        *,
        partitions: Iterable[int] | None = None,
    ) -> dict[TopicPartition, int]:
        """Set the group's offsets of ``topic`` (see :meth:`AIOAdminClient.reset_offsets`)."""
        return self._run(
            self._core.reset_offsets(
                group, topic, to, partitions=None if partitions is None else list(partitions)
            )
        )

    def close(self) -> None:
        if self._rt._closed:
            return
        try:
            self._run(self._core.close())
        finally:
            self._rt.stop()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
