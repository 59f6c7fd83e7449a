"""HEALTH_PORT: /health/live answers while the loop runs; /health/ready follows its checks (NATS,
database), a failing or hanging check is 503 naming it; other paths and methods are 404/405."""

from __future__ import annotations

import asyncio
import json

import pytest

from forgefluid_context.config import ConfigError, load_config
from forgefluid_context.health import HealthServer


async def get(port: int, target: str, method: str = "GET") -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {target} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, (json.loads(body) if body else {})


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_live_and_ready_follow_the_checks() -> None:
    async def scenario() -> None:
        state = {"nats": True, "database": True}

        async def nats_up() -> bool:
            return state["nats"]

        async def db_up() -> bool:
            if not state["database"]:
                await asyncio.sleep(10)  # a hanging database counts as down after the timeout
            return True

        server = HealthServer("127.0.0.1", 0, {"nats": nats_up, "database": db_up}, timeout_s=0.2)
        await server.start()
        port = server.bound_port
        try:
            assert await get(port, "/health/live") == (200, {"status": "live"})
            assert await get(port, "/health/ready") == (
                200,
                {"status": "ready", "checks": {"nats": True, "database": True}},
            )
            state["nats"] = False
            status, body = await get(port, "/health/ready")
            assert status == 503 and body["checks"] == {"nats": False, "database": True}
            state["nats"], state["database"] = True, False
            status, body = await get(port, "/health/ready")
            assert status == 503 and body["checks"] == {"nats": True, "database": False}
            # live does not depend on the dependencies
            assert (await get(port, "/health/live"))[0] == 200
            assert (await get(port, "/health/nope"))[0] == 404
            assert (await get(port, "/health/live", "POST"))[0] == 405
            assert (await get(port, "/health/live", "HEAD")) == (200, {})
        finally:
            await server.stop()

    run(scenario())


def test_a_raising_check_is_not_ready() -> None:
    async def scenario() -> None:
        async def boom() -> bool:
            raise OSError("connection refused")

        server = HealthServer("127.0.0.1", 0, {"database": boom})
        await server.start()
        try:
            status, body = await get(server.bound_port, "/health/ready")
            assert status == 503 and body["checks"] == {"database": False}
        finally:
            await server.stop()

    run(scenario())


def test_health_port_config() -> None:
    base = {"TRANSPORTER": "nats://127.0.0.1:4222", "DATABASE_URL": "postgres://u@h/d"}
    assert load_config(base).health_port == 0
    assert load_config({**base, "HEALTH_PORT": "3001"}).health_port == 3001
    with pytest.raises(ConfigError, match="HEALTH_PORT"):
        load_config({**base, "HEALTH_PORT": "70000"})
