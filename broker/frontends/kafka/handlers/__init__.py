"""The Kafka API's handlers: one per API key, each decoding nothing itself (the codec did),
calling the typed core, and building the response declaration."""

from __future__ import annotations

from strata.broker.frontends.kafka.codec import ApiKey
from strata.broker.frontends.kafka.connection import KafkaHandler
from strata.broker.frontends.kafka.handlers.cluster import ClusterHandlers
from strata.broker.frontends.kafka.handlers.common import KAFKA, KafkaContext
from strata.broker.frontends.kafka.handlers.data import DataHandlers
from strata.broker.frontends.kafka.handlers.groups import GroupHandlers
from strata.broker.frontends.kafka.versions import ADVERTISED


def handler_table(ctx: KafkaContext) -> dict[ApiKey, KafkaHandler]:
    data, cluster, groups = DataHandlers(ctx), ClusterHandlers(ctx), GroupHandlers(ctx)
    table: dict[ApiKey, KafkaHandler] = {
        ApiKey.API_VERSIONS: cluster.api_versions,
        ApiKey.METADATA: cluster.metadata,
        ApiKey.DESCRIBE_CLUSTER: cluster.describe_cluster,
        ApiKey.DESCRIBE_LOG_DIRS: cluster.describe_log_dirs,
        ApiKey.INIT_PRODUCER_ID: cluster.init_producer_id,
        ApiKey.CREATE_TOPICS: cluster.create_topics,
        ApiKey.DELETE_TOPICS: cluster.delete_topics,
        ApiKey.CREATE_PARTITIONS: cluster.create_partitions,
        ApiKey.DESCRIBE_CONFIGS: cluster.describe_configs,
        ApiKey.ALTER_CONFIGS: cluster.alter_configs,
        ApiKey.INCREMENTAL_ALTER_CONFIGS: cluster.incremental_alter_configs,
        ApiKey.PRODUCE: data.produce,
        ApiKey.FETCH: data.fetch,
        ApiKey.LIST_OFFSETS: data.list_offsets,
        ApiKey.OFFSET_FOR_LEADER_EPOCH: data.offset_for_leader_epoch,
        ApiKey.DELETE_RECORDS: data.delete_records,
        ApiKey.FIND_COORDINATOR: groups.find_coordinator,
        ApiKey.JOIN_GROUP: groups.join_group,
        ApiKey.SYNC_GROUP: groups.sync_group,
        ApiKey.HEARTBEAT: groups.heartbeat,
        ApiKey.LEAVE_GROUP: groups.leave_group,
        ApiKey.OFFSET_COMMIT: groups.offset_commit,
        ApiKey.OFFSET_FETCH: groups.offset_fetch,
        ApiKey.OFFSET_DELETE: groups.offset_delete,
        ApiKey.DESCRIBE_GROUPS: groups.describe_groups,
        ApiKey.LIST_GROUPS: groups.list_groups,
        ApiKey.DELETE_GROUPS: groups.delete_groups,
    }
    assert set(table) == set(ADVERTISED), "advertise exactly what is served"
    return table


__all__ = ["KAFKA", "KafkaContext", "handler_table"]
