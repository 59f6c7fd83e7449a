"""`python -m forgefluid_context`: start a context node (config from the environment)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from . import store
from .config import ConfigError, load_config
from .engine import Engine
from .health import HealthServer
from .metrics import Metrics, MetricsServer
from .moleculer import Broker
from .service import context_service
from .tokens import count_tokens

LEVELS = {
    "fatal": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}


async def run() -> int:
    try:
        config = load_config()
    except ConfigError as err:
        print(f"context: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=LEVELS[config.log_level],
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {config.node_id}/%(name)s: %(message)s",
    )
    # load the tokenizer's ranks now (seconds on a busy machine), not inside the first request
    await asyncio.get_running_loop().run_in_executor(None, count_tokens, "warm up")
    pool = await store.connect(config.database_url)
    applied = await store.migrate(pool)
    if applied:
        logging.getLogger("forgefluid_context").info("applied migrations: %s", ", ".join(applied))
    metrics = Metrics(config.namespace)
    broker = Broker(
        transporter=config.transporter,
        namespace=config.namespace,
        node_id=config.node_id,
        request_timeout_s=config.request_timeout_s,
        heartbeat_interval_s=config.heartbeat_interval_s,
        heartbeat_timeout_s=config.heartbeat_timeout_s,
        metrics=metrics,
    )
    engine = Engine(
        pool,
        max_file_bytes=config.max_file_bytes,
        batch_bytes=config.fetch_batch_bytes,
        cache_versions=config.cache_versions,
    )
    broker.add_service(context_service(broker, engine, config.projects_timeout_s))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await broker.start()
    health: HealthServer | None = None
    if config.health_port:

        async def nats_up() -> bool:
            return broker.connected

        async def db_up() -> bool:
            async with pool.acquire(timeout=1) as con:
                return bool(await con.fetchval("SELECT 1") == 1)

        health = HealthServer(config.health_host, config.health_port, {"nats": nats_up, "database": db_up})
        await health.start()
    metrics_server: MetricsServer | None = None
    if config.metrics_port:
        metrics_server = MetricsServer(config.health_host, config.metrics_port, metrics)
        await metrics_server.start()
    print(f"context: node {config.node_id} ready", file=sys.stderr, flush=True)
    await stop.wait()
    await broker.stop()
    if health is not None:
        await health.stop()
    if metrics_server is not None:
        await metrics_server.stop()
    await pool.close()
    return 0


def main() -> None:
    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
