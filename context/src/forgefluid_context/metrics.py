"""The node's metrics, and `GET /metrics` on METRICS_PORT in Prometheus' text format (prometheus-client).

The families (docs/metrics.md lists them with the TS nodes'): names in base units, `_total` on
counters only, bounded label values; every sample carries `namespace` (the Moleculer namespace), as
the TS nodes' pages do, and no node ID or host name (Prometheus adds `instance` from the target).

- `context_actions_total{action, outcome}` and `context_action_seconds{action, outcome}`: the requests
  this node served (`context.select`, `context.index`, `context.status`); outcome `ok`, `rejected` (a
  4xx: bad params, unknown project...), `timeout`, `unavailable` (the node was stopping, or a service it
  needed was not found), `failed` (anything else);
- `context_call_seconds{action, outcome}`: the calls it made (`projects.*`), same outcomes;
- `context_index_seconds{outcome}`: indexing one version (whatever asked: the action, a select of a
  version not indexed yet, the event); `context_index_files_total{result}`: its files, parsed, reused
  (blob known) or skipped (too large, binary);
- gauges read at each scrape: `context_requests_in_flight`, `context_calls_pending`,
  `context_indexing_versions` (indexing now, or waiting for the same version's lock),
  `context_version_indexes` and `context_version_index_files` (version indexes held in memory and their
  files), `context_file_facts_cached` (parsed files' facts in memory), `context_registry_nodes` (the
  other nodes it knows);
- `context_nodes_dropped_total{reason}` (`disconnected`: said goodbye; `heartbeat_timeout`), and
  `context_transporter_reconnects_total`;
- prometheus-client's own `process_*` (CPU, memory, file descriptors, start time) and `python_*`
  (version, GC) families.

Served by the same small asyncio server as the probes (health.py): only `/metrics`, GET or HEAD.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .errors import MoleculerError
from .health import Response, SmallHttpServer, route

# Requests and calls: milliseconds (a cached select) to minutes (a select that indexes a large project first).
ACTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
INDEX_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

OUTCOMES = ("ok", "rejected", "timeout", "unavailable", "failed")


def outcome_of(err: BaseException | None) -> str:
    """The `outcome` label of a request or call that ended with `err` (None: it succeeded)."""
    if err is None:
        return "ok"
    if isinstance(err, TimeoutError):
        return "timeout"
    if isinstance(err, MoleculerError):
        if err.name == "RequestTimeoutError":
            return "timeout"
        if err.name in ("ServiceNotFoundError", "ServiceNotAvailableError"):
            return "unavailable"
        if 400 <= err.code < 500:
            return "rejected"
    return "failed"


class _WithLabels(Collector):
    """Another registry's families with constant labels added to every sample."""

    def __init__(self, source: CollectorRegistry, labels: dict[str, str]) -> None:
        self.source = source
        self.labels = labels

    def collect(self) -> Iterable[Metric]:
        for family in self.source.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            out.samples = [s._replace(labels={**self.labels, **s.labels}) for s in family.samples]
            yield out


class Metrics:
    """The families of one node, in a registry of its own (not prometheus-client's global one)."""

    def __init__(self, namespace: str) -> None:
        # no `_created` series (the time each labelled series appeared): the TS nodes' pages have none
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        for builtin in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(builtin)
        self._page = CollectorRegistry(auto_describe=False)
        self._page.register(_WithLabels(self.registry, {"namespace": namespace}))
        r = self.registry
        self.actions = Counter(
            "context_actions", "Requests this node served, by action and outcome", ["action", "outcome"], registry=r
        )
        self.action_seconds = Histogram(
            "context_action_seconds",
            "Time to serve a request, by action and outcome",
            ["action", "outcome"],
            buckets=ACTION_BUCKETS,
            registry=r,
        )
        self.call_seconds = Histogram(
            "context_call_seconds",
            "Calls this node made to other services (projects.*), by action and outcome",
            ["action", "outcome"],
            buckets=ACTION_BUCKETS,
            registry=r,
        )
        self.index_seconds = Histogram(
            "context_index_seconds", "Time to index one project version", ["outcome"], buckets=INDEX_BUCKETS, registry=r
        )
        self.index_files = Counter(
            "context_index_files",
            "Files of indexed versions: parsed, reused (blob already indexed) or skipped (too large, binary)",
            ["result"],
            registry=r,
        )
        self.nodes_dropped = Counter(
            "context_nodes_dropped",
            "Other nodes removed from this node's registry (said goodbye, or heartbeat timed out)",
            ["reason"],
            registry=r,
        )
        self.reconnects = Counter("context_transporter_reconnects", "Reconnections of the NATS connection", registry=r)
        self._gauges: dict[str, Gauge] = {}
        for name, doc in (
            ("context_requests_in_flight", "Requests this node is serving now"),
            ("context_calls_pending", "Calls this node made that await a response"),
            ("context_indexing_versions", "Versions being indexed now, or waiting for the same version's index"),
            ("context_version_indexes", "Version indexes held in memory (CONTEXT_CACHE_VERSIONS at most)"),
            ("context_version_index_files", "Files of the version indexes held in memory"),
            ("context_file_facts_cached", "Parsed files' facts held in memory"),
            ("context_registry_nodes", "Other nodes this node knows (heard from within the heartbeat timeout)"),
        ):
            self._gauges[name] = Gauge(name, doc, registry=r)
        # series that have not happened yet still show as 0, so a rate() or a ratio over them is defined
        for outcome in ("ok", "failed"):
            self.index_seconds.labels(outcome=outcome)
        for res in ("parsed", "reused", "skipped"):
            self.index_files.labels(result=res)
        for reason in ("disconnected", "heartbeat_timeout"):
            self.nodes_dropped.labels(reason=reason)

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """Reads the gauge `name` from `read()` at each scrape."""
        self._gauges[name].set_function(read)

    @contextmanager
    def timed(self, histogram: Histogram, counter: Counter | None = None, **labels: str) -> Iterator[None]:
        """Times the block into `histogram` (and counts it in `counter`) with its outcome."""
        started = time.perf_counter()
        err: BaseException | None = None
        try:
            yield
        except BaseException as e:
            err = e
            raise
        finally:
            outcome = outcome_of(err)
            histogram.labels(**labels, outcome=outcome).observe(time.perf_counter() - started)
            if counter is not None:
                counter.labels(**labels, outcome=outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self._page)


class MetricsServer(SmallHttpServer):
    def __init__(self, host: str, port: int, metrics: Metrics) -> None:
        super().__init__(host, port)
        self.metrics = metrics

    async def respond(self, method: str, path: str) -> Response:
        refused = route(method, path, ("/metrics",))
        if refused is not None:
            return refused
        # the classic text format (what prometheus-client's own server answers without an Accept asking
        # for another): every Prometheus reads it, and all our names are plain ones
        return Response(200, self.metrics.render(), CONTENT_TYPE_PLAIN_0_0_4)
