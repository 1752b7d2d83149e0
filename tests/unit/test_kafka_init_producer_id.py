"""InitProducerId never answers a Kafka producer with a fatal code because the controller is
busy or moving.

Found by the 1,000-partition benchmark (issue 17): under full load the Java producer of
``kafka-producer-perf-test`` died with "Unexpected error in InitProducerIdResponse; The
server experienced an unexpected error". The Java client retries only the coordinator codes
here and gives up on anything else, so every failure of the controller is answered as
COORDINATOR_NOT_AVAILABLE (retriable), not as the core error's own code.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from strata.broker.core.auth import ANONYMOUS
from strata.broker.frontends.kafka.codec import KafkaErrorCode
from strata.broker.frontends.kafka.codec.messages.produce import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from strata.broker.frontends.kafka.handlers.cluster import ClusterHandlers
from strata.client.errors import ErrorCode, error_for


class _Admin:
    def __init__(self, fail: BaseException | None) -> None:
        self.fail = fail

    async def init_producer_id(self, principal):
        if self.fail is not None:
            raise self.fail
        return 4242, 0


def _answer(fail: BaseException | None) -> InitProducerIdResponse:
    handlers = ClusterHandlers(SimpleNamespace(admin=_Admin(fail)))  # type: ignore[arg-type]
    conn = SimpleNamespace(principal=ANONYMOUS, remote="127.0.0.1:1")
    req = SimpleNamespace(body=InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000))
    answer = asyncio.run(handlers.init_producer_id(conn, req))  # type: ignore[arg-type]
    assert isinstance(answer.body, InitProducerIdResponse)
    return answer.body


def test_a_producer_id_is_granted() -> None:
    body = _answer(None)
    assert (body.error_code, body.producer_id, body.producer_epoch) == (0, 4242, 0)


@pytest.mark.parametrize("fail", [
    error_for(ErrorCode.NOT_CONTROLLER, "no controller is elected yet"),
    error_for(ErrorCode.NOT_ENOUGH_REPLICAS, "__cluster_metadata-0: too many appends queued; retry"),
    error_for(ErrorCode.NOT_LEADER, "broker 1 lost leadership of __cluster_metadata-0"),
    error_for(ErrorCode.TIMED_OUT, "the controller did not commit the change in time"),
    ConnectionResetError("the controller's connection was reset"),
    RuntimeError("anything else on the way"),
], ids=["not-controller", "queue-full", "leadership-lost", "timed-out", "connection-reset", "unexpected"])
def test_a_failing_controller_is_answered_with_the_retriable_code(fail: BaseException) -> None:
    body = _answer(fail)
    assert body.error_code == KafkaErrorCode.COORDINATOR_NOT_AVAILABLE
    assert body.producer_id == -1
