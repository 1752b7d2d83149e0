"""The asyncio connection layer against a tiny in-test server that speaks the codec."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import uvloop

from strata.client.conn import (
    BrokerConnection,
    ConnectionPool,
    connect_any,
    open_connection,
    parse_bootstrap,
)
from strata.client.errors import (
    BrokerConnectionError,
    ClosedError,
    ErrorCode,
    NoBrokersAvailableError,
    NotLeaderError,
    NotStrataBrokerError,
    ProtocolError,
    RequestTimedOutError,
    TimedOutError,
    UnresolvableHostError,
    UnsupportedVersionError,
)
from strata.client.protocol import (
    NEED_DATA,
    Api,
    Connection,
    Frame,
    Role,
    encode_frame,
    error_response,
    handshake_response,
)

#: A hang guard for each test, never a pass/fail criterion.
HANG_GUARD_S = 30


_loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None


@pytest.fixture(autouse=True, params=["asyncio", "uvloop"])
def event_loop_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test runs on both loops: the broker and benchmarks use uvloop, users may not."""
    global _loop_factory
    _loop_factory = uvloop.new_event_loop if request.param == "uvloop" else None
    yield request.param
    _loop_factory = None


def run(coro: Awaitable[Any]) -> Any:
    async def guarded() -> Any:
        async with asyncio.timeout(HANG_GUARD_S):
            return await coro

    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        return runner.run(guarded())


class TestServer:
    """Answers PRODUCE with base_offset = the request's partition and the payload echoed.

    ``hold``: requests queue until :meth:`release`; ``silent``: never answer;
    ``drop_after``: abort the connection once that many requests arrived;
    ``handshake``: replace the handshake reply. Topic "moved" is answered with NOT_LEADER.
    """

    __test__ = False

    def __init__(
        self,
        *,
        hold: bool = False,
        silent: bool = False,
        drop_after: int | None = None,
        handshake: Callable[[dict], list] | None = None,
    ) -> None:
        self.hold, self.silent, self.drop_after, self.handshake = (
            hold,
            silent,
            drop_after,
            handshake,
        )
        self.received: list[Frame] = []
        self.unanswered: list[tuple[asyncio.StreamWriter, Connection, Frame]] = []
        self.max_unanswered = 0
        self.changed = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: list[asyncio.Task] = []

    async def __aenter__(self) -> TestServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.transport.abort()
        # Let every connection handler see its connection end, so none is left running.
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self.changed.clear()
            await self.changed.wait()

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            writer, conn, frame = self.unanswered.pop(0)
            writer.writelines(self._answer(conn, frame))

    def _answer(self, conn: Connection, frame: Frame) -> list:
        h = frame.header
        if h.get("topic") == "moved":
            return conn.send_response(
                h,
                {"leader": 2, "leader_addr": "10.0.0.2:9092"},
                err=ErrorCode.NOT_LEADER,
                msg="moved",
            )
        return conn.send_response(h, {"base_offset": h.get("partition", 0)}, bytes(frame.payload))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        conn = Connection(Role.SERVER)
        try:
            while data := await reader.read(65536):
                conn.receive_data(data)
                while (frame := conn.next_frame()) is not NEED_DATA:
                    assert isinstance(frame, Frame)
                    self._on_frame(writer, conn, frame)
        except (ConnectionError, ProtocolError):
            pass
        finally:
            writer.close()

    def _on_frame(self, writer: asyncio.StreamWriter, conn: Connection, frame: Frame) -> None:
        if frame.api == Api.HANDSHAKE:
            reply = (
                self.handshake(frame.header)
                if self.handshake
                else conn.send_response(
                    frame.header, handshake_response(frame.header, broker_id=7)
                )
            )
            writer.writelines(reply)
            return
        self.received.append(frame)
        self.changed.set()
        if frame.header.get("oneway"):
            return
        if self.drop_after is not None and len(self.received) >= self.drop_after:
            writer.transport.abort()
            return
        if self.silent:
            return
        if self.hold:
            self.unanswered.append((writer, conn, frame))
            self.max_unanswered = max(self.max_unanswered, len(self.unanswered))
            return
        writer.writelines(self._answer(conn, frame))


def produce(i: int) -> dict:
    return {"topic": "t", "partition": i, "acks": 1}


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- tests -------------------------------------------------------------------------------


def test_handshake_then_pipelined_requests_answered_in_order() -> None:
    async def main() -> None:
        async with TestServer() as srv:
            conn = await open_connection("127.0.0.1", srv.port, client_id="t")
            assert conn.broker_id == 7 and conn.version_for(Api.PRODUCE) == 0
            results = await asyncio.gather(
                *(conn.request(Api.PRODUCE, produce(i), f"batch-{i}".encode()) for i in range(200))
            )
            for i, (header, payload) in enumerate(results):
                assert header["base_offset"] == i and bytes(payload) == f"batch-{i}".encode()
            assert [f.header["partition"] for f in srv.received] == list(range(200))
            await conn.close()

    run(main())


def test_in_flight_bound_is_respected() -> None:
    async def main() -> None:
        async with TestServer(hold=True) as srv:
            conn = await open_connection("127.0.0.1", srv.port, max_in_flight=2)
            tasks = [asyncio.create_task(conn.request(Api.PRODUCE, produce(i))) for i in range(6)]
            for answered in range(6):
                await srv.wait_for(lambda a=answered: len(srv.received) >= min(6, a + 2))
                assert conn.in_flight <= 2
                srv.release()
            results = await asyncio.gather(*tasks)
            assert [h["base_offset"] for h, _ in results] == list(range(6))
            assert srv.max_unanswered == 2
            await conn.close()

    run(main())


def test_dropped_connection_fails_every_pending_request() -> None:
    async def main() -> None:
        async with TestServer(drop_after=3, silent=True) as srv:
            conn = await open_connection("127.0.0.1", srv.port)
            results = await asyncio.gather(
                *(conn.request(Api.PRODUCE, produce(i)) for i in range(3)), return_exceptions=True
            )
            assert all(isinstance(r, BrokerConnectionError) for r in results), results
            assert all("127.0.0.1" in r.message and r.retriable for r in results)
            assert conn.closed
            with pytest.raises(BrokerConnectionError):
                await conn.request(Api.PRODUCE, produce(0))
            await conn.close()

    run(main())


def test_request_timeout_raises_timed_out_and_keeps_the_slot() -> None:
    async def main() -> None:
        async with TestServer(silent=True) as srv:
            conn = await open_connection("127.0.0.1", srv.port, max_in_flight=1)
            with pytest.raises(RequestTimedOutError) as info:
                await conn.request(Api.PRODUCE, produce(0), timeout=0.05)
            assert isinstance(info.value, TimedOutError) and "PRODUCE" in info.value.message
            # The broker may still be working on it: the slot stays taken.
            assert conn.in_flight == 1
            with pytest.raises(RequestTimedOutError, match="in-flight slot"):
                await conn.request(Api.PRODUCE, produce(1), timeout=0.05)
            await conn.close()

    run(main())


def test_late_response_after_timeout_is_dropped_and_frees_the_slot() -> None:
    async def main() -> None:
        async with TestServer(hold=True) as srv:
            conn = await open_connection("127.0.0.1", srv.port, max_in_flight=1)
            with pytest.raises(RequestTimedOutError):
                await conn.request(Api.PRODUCE, produce(0), timeout=0.05)
            second = asyncio.create_task(conn.request(Api.PRODUCE, produce(1)))
            srv.release()  # the late answer to the first request
            await srv.wait_for(lambda: len(srv.received) == 2)
            srv.release()
            header, _ = await second
            assert header["base_offset"] == 1 and conn.in_flight == 0
            await conn.close()

    run(main())


def test_error_responses_raise_with_details() -> None:
    async def main() -> None:
        async with TestServer() as srv:
            conn = await open_connection("127.0.0.1", srv.port)
            with pytest.raises(NotLeaderError) as info:
                await conn.request(Api.PRODUCE, {"topic": "moved", "partition": 0})
            assert (info.value.leader_id, info.value.leader_addr) == (2, "10.0.0.2:9092")
            header, _ = await conn.request(
                Api.PRODUCE, {"topic": "moved", "partition": 0}, raise_on_error=False
            )
            assert header["err"] == ErrorCode.NOT_LEADER
            header, _ = await conn.request(Api.PRODUCE, produce(5))  # still usable
            assert header["base_offset"] == 5
            await conn.close()

    run(main())


def test_oneway_gets_no_response_and_does_not_disturb_ordering() -> None:
    async def main() -> None:
        async with TestServer() as srv:
            conn = await open_connection("127.0.0.1", srv.port)
            await conn.send_oneway(Api.PRODUCE, {"topic": "t", "partition": 1, "acks": 0}, b"x")
            header, _ = await conn.request(Api.PRODUCE, produce(2))
            assert header["base_offset"] == 2 and conn.in_flight == 0
            assert [f.header.get("oneway", False) for f in srv.received] == [True, False]
            await conn.close()

    run(main())


def test_close_fails_pending_with_closed_error() -> None:
    async def main() -> None:
        async with TestServer(silent=True) as srv:
            conn = await open_connection("127.0.0.1", srv.port)
            pending = asyncio.create_task(conn.request(Api.PRODUCE, produce(0)))
            await srv.wait_for(lambda: len(srv.received) == 1)
            await conn.close()
            with pytest.raises(ClosedError):
                await pending
            with pytest.raises(ClosedError):
                await conn.request(Api.PRODUCE, produce(1))

    run(main())


def test_garbage_from_the_broker_fails_pending_with_protocol_error() -> None:
    async def main() -> None:
        async with TestServer(silent=True) as srv:
            conn = await open_connection("127.0.0.1", srv.port)
            pending = asyncio.create_task(conn.request(Api.PRODUCE, produce(0)))
            await srv.wait_for(lambda: len(srv.received) == 1)
            srv.writers[0].write(b"\x00\x00\x00\x08\x00\x00\x00\x04\xc1\xc1\xc1\xc1")
            with pytest.raises(ProtocolError) as info:
                await pending
            assert (
                info.value.code is ErrorCode.INVALID_RESPONSE
                and "bad response" in info.value.message
            )
            await conn.close()

    run(main())


def test_handshake_refusal_raises_the_brokers_error() -> None:
    def refuse(h: dict) -> list:
        return encode_frame(error_response(h, ErrorCode.UNSUPPORTED_VERSION, "too old", apis=[]))

    async def main() -> None:
        async with TestServer(handshake=refuse) as srv:
            with pytest.raises(UnsupportedVersionError, match="too old"):
                await open_connection("127.0.0.1", srv.port)

    run(main())


def test_handshake_timeout_is_a_connection_error() -> None:
    async def main() -> None:
        async with TestServer(handshake=lambda h: []) as srv:
            with pytest.raises(BrokerConnectionError, match="timed out"):
                await open_connection("127.0.0.1", srv.port, timeout=0.05)

    run(main())


def test_bootstrap_falls_through_to_a_reachable_address() -> None:
    async def main() -> None:
        async with TestServer() as srv:
            dead = free_port()
            conn = await connect_any(f"127.0.0.1:{dead}, 127.0.0.1:{srv.port}", timeout=5)
            assert conn.port == srv.port
            await conn.close()

            pool = ConnectionPool([f"127.0.0.1:{dead}", f"127.0.0.1:{srv.port}"], timeout=5)
            a = await pool.any()
            b, c = await asyncio.gather(pool.get("127.0.0.1", srv.port), pool.any())
            assert a is b is c and isinstance(a, BrokerConnection)
            await pool.close()
            assert a.closed
            with pytest.raises(ClosedError):
                await pool.any()

    run(main())


def test_all_unreachable_is_a_clear_error() -> None:
    async def main() -> None:
        dead = [free_port(), free_port()]
        with pytest.raises(NoBrokersAvailableError) as info:
            await connect_any([f"127.0.0.1:{p}" for p in dead], timeout=5)
        for p in dead:
            assert f"127.0.0.1:{p}" in info.value.message
        assert "bootstrap" in str(info.value)
        with pytest.raises(NoBrokersAvailableError):
            await ConnectionPool(f"127.0.0.1:{dead[0]}", timeout=5).any()

    run(main())


class ForeignServer:
    """Something that is not a Strata broker: answers any bytes with ``reply``, then closes."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply

    async def __aenter__(self) -> ForeignServer:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.write(self.reply)
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


def test_an_http_server_is_named_as_not_a_strata_broker() -> None:
    reply = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"

    async def main() -> None:
        async with ForeignServer(reply) as srv:
            with pytest.raises(NotStrataBrokerError) as info:
                await open_connection("127.0.0.1", srv.port, timeout=5)
            assert "does not look like a Strata broker" in info.value.message
            assert "HTTP/1.1 400" in info.value.message  # what came back, quoted
            assert not info.value.retriable
            assert "frame" not in info.value.hint
            with pytest.raises(NoBrokersAvailableError) as many:
                await connect_any(f"127.0.0.1:{srv.port}", timeout=5)
            assert isinstance(many.value.causes[0], NotStrataBrokerError)

    run(main())


def test_a_port_that_hangs_up_without_a_word_is_named_too() -> None:
    async def main() -> None:
        async with ForeignServer(b"") as srv:  # a Kafka listener closes on our bytes
            with pytest.raises(BrokerConnectionError, match="does not look like a Strata broker"):
                await open_connection("127.0.0.1", srv.port, timeout=5)

    run(main())


def test_an_unresolvable_host_fails_at_once_and_is_not_retriable() -> None:
    async def main() -> None:
        with pytest.raises(UnresolvableHostError) as info:
            await open_connection("no-such-host.invalid", 9092, timeout=5)
        assert "cannot resolve host 'no-such-host.invalid'" in info.value.message
        assert not info.value.retriable

    run(main())


def test_library_messages_name_no_cli_flags() -> None:
    async def main() -> None:
        with pytest.raises(NoBrokersAvailableError) as info:
            await connect_any(f"127.0.0.1:{free_port()}", timeout=5)
        assert "--" not in str(info.value) and "STRATA_BOOTSTRAP" not in str(info.value)

    run(main())


def test_parse_bootstrap() -> None:
    assert parse_bootstrap("a:1, b:2,[::1]:9092") == [("a", 1), ("b", 2), ("::1", 9092)]
    assert parse_bootstrap(["h:9"]) == [("h", 9)]
    for bad in ["", "nohost", "h:", "h:x", "h:70000", ":9"]:
        with pytest.raises(ValueError):
            parse_bootstrap(bad)


def test_requests_leave_in_call_order_even_when_the_socket_pushes_back() -> None:
    """An idempotent producer pipelines one partition's batches: a request made while the
    transport is paused must not be overtaken by one made right as it resumes."""

    async def main() -> None:
        async with TestServer() as srv:
            conn = await open_connection("127.0.0.1", srv.port, client_id="t")
            conn._writable.clear()  # what pause_writing() does: the socket buffer is full
            first = asyncio.ensure_future(conn.request(Api.PRODUCE, produce(0), b"first"))
            await asyncio.sleep(0)  # `first` has made its request and is under way

            async def resume_then_send():
                conn._writable.set()  # resume_writing(), then a request made at once
                return await conn.request(Api.PRODUCE, produce(1), b"second")

            await asyncio.gather(first, resume_then_send())
            assert [f.header["partition"] for f in srv.received] == [0, 1]
            await conn.close()

    run(main())
