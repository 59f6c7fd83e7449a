"""The node's HTTP endpoints: the probes on HEALTH_PORT (`GET /health/live`, `GET /health/ready`) and,
through the same small server, the Prometheus page on METRICS_PORT (metrics.py).

live: the event loop answers (200 `{"status":"live"}`). ready: the NATS connection is up and
PostgreSQL answers `SELECT 1` within a second (200 `{"status":"ready"}`, else 503 with the checks).
Anything else is 404, a method other than GET/HEAD 405. Hand-written over `asyncio.start_server`
rather than a web framework: a few fixed GET paths, no bodies read, and it keeps the node's
dependencies small.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Check = Callable[[], Awaitable[bool]]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable", 400: "Bad Request"}
JSON = "application/json"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON

    @classmethod
    def json(cls, status: int, body: dict[str, object]) -> Response:
        return cls(status, json.dumps(body).encode())


class SmallHttpServer:
    """One request per connection, GET/HEAD on fixed paths; subclasses answer in `respond`."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
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

    async def respond(self, method: str, path: str) -> Response:
        raise NotImplementedError

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            # headers are read and ignored (bounded: at most 100 lines of 8 KB)
            for _ in range(100):
                h = await asyncio.wait_for(reader.readline(), 5)
                if h in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                res = Response.json(400, {"error": "malformed request"})
            else:
                res = await self.respond(parts[0], parts[1].split("?", 1)[0])
            payload = b"" if parts and parts[0] == "HEAD" else res.body
            head = (
                f"HTTP/1.1 {res.status} {_REASONS[res.status]}\r\ncontent-type: {res.content_type}\r\n"
                f"content-length: {len(res.body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n"
            )
            writer.write(head.encode() + payload)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


def route(method: str, path: str, paths: tuple[str, ...]) -> Response | None:
    """404 for an unknown path, 405 for a method other than GET/HEAD; None when the request is served."""
    if path not in paths:
        return Response.json(404, {"error": "not found"})
    if method not in ("GET", "HEAD"):
        return Response.json(405, {"error": "method not allowed"})
    return None


class HealthServer(SmallHttpServer):
    def __init__(self, host: str, port: int, checks: dict[str, Check], timeout_s: float = 1.0) -> None:
        super().__init__(host, port)
        self.checks = checks
        self.timeout_s = timeout_s

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

    async def respond(self, method: str, path: str) -> Response:
        refused = route(method, path, ("/health/live", "/health/ready"))
        if refused is not None:
            return refused
        if path == "/health/live":
            return Response.json(200, {"status": "live"})
        ok, checks = await self.ready()
        return Response.json(200 if ok else 503, {"status": "ready" if ok else "not ready", "checks": checks})
