"""The background event loop behind the sync clients.

The sync ``Producer``/``Consumer``/``AdminClient`` are thin facades over the asyncio
core in :mod:`strata.client.aio`: there is one implementation of every protocol
exchange, and it is async. Each sync client object owns one :class:`LoopThread` — a
daemon thread running its own event loop (uvloop when installed) — and waits on
``concurrent.futures`` for the coroutines it submits there.

One loop per client object (not one shared loop for the process) keeps clients
independent: a slow callback on one producer's loop does not stall another client, and
closing a client stops exactly its thread. The cost is one thread per client, which is
what kafka-python pays too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from strata.client.errors import ClosedError, RequestTimedOutError

T = TypeVar("T")

#: How long stopping waits for the loop's remaining tasks before abandoning them.
STOP_TIMEOUT_S = 10.0
#: Slack on top of a client's own timeouts when a sync facade waits on its loop.
SLACK_S = 5.0


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay usable without
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    """An event loop running in a daemon thread, with blocking helpers to use it."""

    def __init__(self, name: str = "strata-client") -> None:
        self.loop = _new_loop()
        self._started = threading.Event()
        self._closed = False
        #: Set once a blocking call was interrupted (Ctrl-C): closing then does not wait.
        self.interrupted = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                self._cancel_remaining()
            self.loop.close()

    def _cancel_remaining(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    @property
    def in_loop_thread(self) -> bool:
        """True when called from the loop's own thread (where blocking would deadlock)."""
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; the returned future resolves with its outcome."""
        if self._closed:
            coro.close()
            raise ClosedError("the client's event loop is stopped; the client was closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and block for its result (at most ``timeout`` seconds).

        On timeout the coroutine is cancelled and :class:`RequestTimedOutError` raised, so a
        caller never waits longer than it asked to.
        """
        if self.in_loop_thread:
            coro.close()
            raise RuntimeError(
                "a blocking client call was made from inside a client callback; "
                "callbacks run on the client's I/O thread and must not block on it"
            )
        fut = self.submit(coro)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise RequestTimedOutError(
                f"the operation did not finish within {timeout:g}s"
            ) from None
        except concurrent.futures.CancelledError:
            raise ClosedError("the operation was cancelled because the client closed") from None
        except BaseException:
            # KeyboardInterrupt (Ctrl-C) lands here, in the waiting thread: the work on the
            # loop stops too, instead of running on behind the caller's back.
            fut.cancel()
            self.interrupted = True
            raise

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon (thread-safe); ignored once stopped."""
        if not self._closed:
            with contextlib.suppress(RuntimeError):  # loop closed under us
                self.loop.call_soon_threadsafe(fn, *args)

    def interruptible(self) -> contextlib.AbstractContextManager[None]:
        """Wrap a blocking wait that is not :meth:`run` (e.g. on a threading primitive):
        an interrupt there is remembered as well."""
        return _NoteInterrupt(self)

    def stop(self, final: Callable[[], Awaitable[Any]] | None = None) -> None:
        """Run ``final()`` (if given) on the loop, then stop the loop and join its thread."""
        if self._closed:
            return
        if final is not None and not self.in_loop_thread:
            with contextlib.suppress(Exception):
                self.run(_call(final), STOP_TIMEOUT_S)
        self._closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop_thread:
            self._thread.join(STOP_TIMEOUT_S)


class _NoteInterrupt(contextlib.AbstractContextManager[None]):
    def __init__(self, rt: LoopThread) -> None:
        self.rt = rt

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.rt.interrupted = True


class AsyncClient(Protocol):
    """What a sync facade starts and closes: one of the asyncio clients."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def start_on_own_loop(core: AsyncClient, name: str, timeout_s: float) -> LoopThread:
    """A new :class:`LoopThread` named ``name`` with ``core.start()`` run on it.

    If starting fails (or is interrupted), the core is closed and the thread stopped
    before the error is raised, so a client that never started leaves nothing behind.
    """
    rt = LoopThread(name)
    try:
        rt.run(core.start(), timeout_s)
    except BaseException:
        with contextlib.suppress(Exception):
            rt.run(core.close(), SLACK_S)
        rt.stop()
        raise
    return rt


async def _call(fn: Callable[[], Awaitable[Any]]) -> Any:
    return await fn()
