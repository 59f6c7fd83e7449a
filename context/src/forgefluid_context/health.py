"""The node's probe endpoints on HEALTH_PORT: `GET /health/live` and `GET /health/ready`.

live: the event loop answers (200 `{"status":"live"}`). ready: the NATS connection is up and
PostgreSQL answers `SELECT 1` within a second (200 `{"status":"ready"}`, else 503 with the checks).
Anything else is 404, a method other than GET/HEAD 405. Hand-written over `asyncio.start_server`
rather than a web framework: two fixed GET paths, no bodies read, and it keeps the node's
dependencies to nats-py and asyncpg.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

Check = Callable[[], Awaitable[bool]]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable", 400: "Bad Request"}


class HealthServer:
    def __init__(self, host: str, port: int, checks: dict[str, Check], timeout_s: float = 1.0) -> None:
        self.host = host
        self.port = port
        self.checks = checks
        self.timeout_s = timeout_s
        self._server: asyncio.Server | None = None

    @property
    def bound_port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def ready(self) -> tuple[bool, dict[str, bool]]:
        async def one(check: Check) -> bool:
            try:
                return await asyncio.wait_for(check(), self.timeout_s)
            except Exception:  # a failing or slow dependency is "not ready", never a crash
                return False

        names = list(self.checks)
        results = await asyncio.gather(*(one(self.checks[n]) for n in names))
        status = dict(zip(names, results, strict=True))
        return all(results), status

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            # headers are read and ignored (bounded: at most 100 lines of 8 KB)
            for _ in range(100):
                h = await asyncio.wait_for(reader.readline(), 5)
                if h in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1").split()
            status, body = self._route(parts)
            if status == 0:
                ok, checks = await self.ready()
                status, body = (200 if ok else 503), {"status": "ready" if ok else "not ready", "checks": checks}
            payload = b"" if parts and parts[0] == "HEAD" else json.dumps(body).encode()
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(payload)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n"
            )
            writer.write(head.encode() + payload)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _route(parts: list[str]) -> tuple[int, dict[str, object]]:
        """(status, body); status 0 means "run the readiness checks"."""
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return 400, {"error": "malformed request"}
        method, target = parts[0], parts[1].split("?", 1)[0]
        if target not in ("/health/live", "/health/ready"):
            return 404, {"error": "not found"}
        if method not in ("GET", "HEAD"):
            return 405, {"error": "method not allowed"}
        if target == "/health/live":
            return 200, {"status": "live"}
        return 0, {}
