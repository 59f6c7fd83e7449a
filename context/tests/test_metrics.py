"""METRICS_PORT: the families the node keeps, how requests and calls are counted by outcome, the page
in Prometheus' text format (every sample labelled with the namespace), and the server's routes."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from forgefluid_context.config import ConfigError, load_config
from forgefluid_context.errors import client_error, request_timeout, service_not_found
from forgefluid_context.metrics import Metrics, MetricsServer, outcome_of
from forgefluid_context.moleculer import Broker, Context, ServiceDef


def families(m: Metrics) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(m.render().decode())}


def value(m: Metrics, sample: str, **labels: str) -> float:
    """The value of one sample (exact label match on the given labels, namespace aside)."""
    for fam in text_string_to_metric_families(m.render().decode()):
        for s in fam.samples:
            if s.name == sample and {k: v for k, v in s.labels.items() if k != "namespace"} == labels:
                return float(s.value)
    raise AssertionError(f"no sample {sample}{labels}")


def test_outcomes() -> None:
    assert outcome_of(None) == "ok"
    assert outcome_of(client_error("Project not found", 404, "PROJECT_NOT_FOUND")) == "rejected"
    assert outcome_of(request_timeout("projects.access", "n1")) == "timeout"
    assert outcome_of(TimeoutError()) == "timeout"
    assert outcome_of(service_not_found("projects.access")) == "unavailable"
    assert outcome_of(RuntimeError("boom")) == "failed"


def test_the_page_is_prometheus_text_with_the_namespace_on_every_sample() -> None:
    m = Metrics("ns-a")
    m.gauge("context_registry_nodes", lambda: 4)
    fams = families(m)
    for name in (
        "context_actions",
        "context_action_seconds",
        "context_call_seconds",
        "context_index_seconds",
        "context_index_files",
        "context_requests_in_flight",
        "context_calls_pending",
        "context_indexing_versions",
        "context_version_indexes",
        "context_version_index_files",
        "context_file_facts_cached",
        "context_registry_nodes",
        "context_nodes_dropped",
        "context_transporter_reconnects",
        "process_cpu_seconds",
        "python_info",
    ):
        assert name in fams, name
    assert fams["context_action_seconds"].type == "histogram"
    assert fams["context_actions"].type == "counter"
    assert fams["context_registry_nodes"].type == "gauge"
    assert value(m, "context_registry_nodes") == 4
    # series that have not happened yet are there as 0
    assert value(m, "context_index_files_total", result="parsed") == 0
    assert value(m, "context_nodes_dropped_total", reason="heartbeat_timeout") == 0
    text = m.render().decode()
    assert "_created" not in text
    assert socket.gethostname() not in text
    for fam in fams.values():
        for s in fam.samples:
            assert s.labels.get("namespace") == "ns-a", s


def broker_with(metrics: Metrics) -> Broker:
    """A broker that is never connected: its packets go nowhere, its handlers run as for a request."""

    async def ok(ctx: Context) -> dict[str, Any]:
        return {"ok": True}

    async def missing(ctx: Context) -> None:
        raise client_error("Project not found", 404, "PROJECT_NOT_FOUND")

    async def broken(ctx: Context) -> None:
        raise RuntimeError("boom")

    async def slow(ctx: Context) -> None:
        await asyncio.sleep(5)

    broker = Broker(transporter="nats://127.0.0.1:1", namespace="ns-b", node_id="py-1", metrics=metrics)
    broker.add_service(
        ServiceDef(name="context", actions={"select": ok, "status": missing, "index": broken, "slow": slow})
    )
    return broker


def test_requests_are_counted_and_timed_by_action_and_outcome() -> None:
    m = Metrics("ns-b")
    broker = broker_with(m)

    async def scenario() -> None:
        req = lambda action, **extra: {"id": "r", "action": action, "params": {}, **extra}  # noqa: E731
        await broker._handle_request("ts-1", req("context.select"))
        await broker._handle_request("ts-1", req("context.select"))
        await broker._handle_request("ts-1", req("context.status"))
        await broker._handle_request("ts-1", req("context.index"))
        await broker._handle_request("ts-1", req("context.slow", timeout=50))
        # an action this node does not have is answered, but is no label value
        await broker._handle_request("ts-1", req("context.nope"))
        broker._stopping = True
        await broker._handle_request("ts-1", req("context.select"))

    asyncio.run(scenario())
    assert value(m, "context_actions_total", action="context.select", outcome="ok") == 2
    assert value(m, "context_actions_total", action="context.select", outcome="unavailable") == 1
    assert value(m, "context_actions_total", action="context.status", outcome="rejected") == 1
    assert value(m, "context_actions_total", action="context.index", outcome="failed") == 1
    assert value(m, "context_actions_total", action="context.slow", outcome="timeout") == 1
    assert value(m, "context_action_seconds_count", action="context.select", outcome="ok") == 2
    assert value(m, "context_action_seconds_sum", action="context.slow", outcome="timeout") >= 0.05
    assert 'action="context.nope"' not in m.render().decode()
    assert value(m, "context_requests_in_flight") == 0


def test_calls_nodes_and_reconnects() -> None:
    m = Metrics("ns-c")
    broker = broker_with(m)

    async def scenario() -> None:
        with pytest.raises(Exception, match="is not found"):
            await broker.call("projects.access", {})
        broker._handle_info("ts-1", {"services": [{"name": "projects", "actions": {"projects.access": {}}}]})
        broker._handle_info("ts-2", {"services": []})
        assert value(m, "context_registry_nodes") == 2
        # ts-1 never answers: a timeout
        with pytest.raises(Exception, match="timed out"):
            await broker.call("projects.access", {}, timeout_s=0.05)
        broker._node_gone("ts-1", "disconnected")
        broker.nodes["ts-2"].last_seen = time.monotonic() - 60
        broker._node_gone("ts-2", "heartbeat timed out")
        await broker._on_reconnected()

    asyncio.run(scenario())
    assert value(m, "context_call_seconds_count", action="projects.access", outcome="unavailable") == 1
    assert value(m, "context_call_seconds_count", action="projects.access", outcome="timeout") == 1
    assert value(m, "context_calls_pending") == 0
    assert value(m, "context_nodes_dropped_total", reason="disconnected") == 1
    assert value(m, "context_nodes_dropped_total", reason="heartbeat_timeout") == 1
    assert value(m, "context_registry_nodes") == 0
    assert value(m, "context_transporter_reconnects_total") == 1


async def http(port: int, target: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {target} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_the_server_serves_only_get_metrics() -> None:
    async def scenario() -> None:
        m = Metrics("ns-d")
        server = MetricsServer("127.0.0.1", 0, m)
        await server.start()
        port = server.bound_port
        try:
            status, headers, body = await http(port, "/metrics")
            assert status == 200
            assert headers["content-type"].startswith("text/plain; version=0.0.4")
            assert b"# TYPE context_action_seconds histogram" in body
            assert (await http(port, "/metrics?x=1"))[0] == 200
            status, _, body = await http(port, "/metrics", "HEAD")
            assert (status, body) == (200, b"")
            assert (await http(port, "/"))[0] == 404
            assert (await http(port, "/health/live"))[0] == 404
            assert (await http(port, "/metrics", "POST"))[0] == 405
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_metrics_port_and_heartbeat_config() -> None:
    base = {"TRANSPORTER": "nats://127.0.0.1:4222", "DATABASE_URL": "postgres://u@h/d"}
    config = load_config(base)
    assert config.metrics_port == 0
    # the TS nodes' defaults (src/config.ts): slower beats get the node dropped by them every few seconds
    assert (config.heartbeat_interval_s, config.heartbeat_timeout_s) == (1, 3)
    assert load_config({**base, "METRICS_PORT": "3002", "HEALTH_PORT": "3001"}).metrics_port == 3002
    with pytest.raises(ConfigError, match="METRICS_PORT must differ from HEALTH_PORT"):
        load_config({**base, "METRICS_PORT": "3001", "HEALTH_PORT": "3001"})
    with pytest.raises(ConfigError, match="METRICS_PORT"):
        load_config({**base, "METRICS_PORT": "-1"})
