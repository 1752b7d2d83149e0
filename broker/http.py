"""The metrics port: ``/metrics`` (Prometheus), ``/healthz`` (alive) and ``/readyz`` (ready).

A tiny HTTP/1.1 server on the broker's own event loop, so a scrape sees the broker's state
without locks and costs no extra thread. Requests are bounded (one short request line and
headers, then the connection closes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger("strata.broker.http")

MAX_REQUEST_BYTES = 8192


class MetricsServer:
    """Serves ``render()`` at /metrics and ``ready()``'s verdict at /readyz."""

    def __init__(self, render: Callable[[], bytes], ready: Callable[[], tuple[bool, str]]) -> None:
        self.render = render
        self.ready = ready
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._serve, host, port, reuse_address=True)

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        try:
            if len(head) > MAX_REQUEST_BYTES:
                status, ctype, body = 431, "text/plain", b"request header too large\n"
            else:
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                parts = line.split()
                method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
                path = path.split("?", 1)[0]
                if method not in ("GET", "HEAD"):
                    status, ctype, body = 405, "text/plain", b"method not allowed\n"
                elif path == "/metrics":
                    status, ctype, body = 200, CONTENT_TYPE_LATEST, self.render()
                elif path == "/healthz":
                    status, ctype, body = 200, "text/plain", b"ok\n"
                elif path == "/readyz":
                    ok, why = self.ready()
                    status, ctype, body = (200 if ok else 503), "text/plain", (why + "\n").encode()
                else:
                    status, ctype, body = 404, "text/plain", b"not found: try /metrics, /healthz or /readyz\n"
                if method == "HEAD":
                    body = b""
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 431: "Too Large",
                      503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except Exception:  # a scrape must never take the broker down
            log.exception("metrics request failed")
        finally:
            writer.close()
