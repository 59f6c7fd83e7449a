"""A Moleculer node over NATS: the subset of Moleculer protocol 5 (what Moleculer 0.15 speaks) this
service needs, with the JSON serializer.

Wire format (read from moleculer/src/transit.js, transporters/base.js, serializers/json.js 0.15.2):
- topics are `MOL[-<namespace>].<CMD>` (broadcast) and `MOL[-<namespace>].<CMD>.<nodeID>` (targeted);
- every payload is one JSON object carrying `ver: "5"` and `sender`; the JSON serializer sends params,
  data, meta and error as plain JSON (no `paramsType`/`dataType`, which only the binary serializers use);
- INFO carries `services` (each with `actions` and `events` keyed by full name), `instanceID`, `seq`;
- HEARTBEAT `{ cpu }`; a node unheard of for `heartbeat_timeout_s` is gone; DISCONNECT says goodbye;
- REQ `{ id, action, params, meta, timeout, level, requestID, ... }` -> RES `{ id, success, data, error }`
  targeted at the caller; errors carry `name`, `message`, `code`, `type`, `data`, `retryable`, `nodeID`;
- EVENT `{ id, event, data, groups, broadcast, meta }` targeted at each chosen node;
- PING `{ time, id }` -> PONG `{ time, id, arrived }` (the platform's dead-node detector pings a node
  that timed out a request and evicts it when no PONG comes).

Why not pylecular (PyPI 0.2.0): it sends protocol version "4" (Moleculer 0.15 drops those packets with
ProtocolVersionMismatchError), ignores the namespace (`MOL.` topics only), sends errors without
`code`/`type`/`data`, never answers PING, and needs Python 3.12.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from .errors import MoleculerError, request_timeout, service_not_available, service_not_found
from .metrics import Metrics, outcome_of

PROTOCOL_VERSION = "5"
log = logging.getLogger("forgefluid_context.moleculer")


@dataclass
class Context:
    """What an action handler gets: params, meta and a way to call further (with the caller's level)."""

    broker: Broker
    action: str
    params: dict[str, Any]
    meta: dict[str, Any]
    caller_node: str | None
    request_id: str | None
    level: int = 1

    async def call(self, action: str, params: dict[str, Any], timeout_s: float | None = None) -> Any:
        return await self.broker.call(
            action, params, timeout_s=timeout_s, meta=self.meta, level=self.level + 1, request_id=self.request_id
        )


ActionHandler = Callable[[Context], Awaitable[Any]]
EventHandler = Callable[[dict[str, Any], str | None], Awaitable[None]]


@dataclass
class RemoteNode:
    node_id: str
    instance_id: str
    actions: set[str]
    events: dict[str, set[str]]  # event name -> groups
    last_seen: float
    seq: int = 1


@dataclass
class _Pending:
    future: asyncio.Future[Any]
    node_id: str
    action: str


@dataclass
class ServiceDef:
    name: str
    actions: dict[str, ActionHandler] = field(default_factory=dict)
    events: dict[str, EventHandler] = field(default_factory=dict)
    visibility: str = "public"
    # actions TS callers may retry on another node (Moleculer reads `retryPolicy` from INFO)
    idempotent: frozenset[str] = frozenset()


class Broker:
    """One Moleculer node: discovery, heartbeats, requests both ways, events, PING/PONG, goodbye."""

    def __init__(
        self,
        *,
        transporter: str,
        namespace: str,
        node_id: str,
        request_timeout_s: float = 10.0,
        heartbeat_interval_s: float = 1.0,
        heartbeat_timeout_s: float = 3.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.transporter_url = transporter
        self.namespace = namespace
        self.node_id = node_id
        self.instance_id = uuid.uuid4().hex
        self.request_timeout_s = request_timeout_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.prefix = "MOL" + (f"-{namespace}" if namespace else "")
        self.services: list[ServiceDef] = []
        self.nodes: dict[str, RemoteNode] = {}
        self._pending: dict[str, _Pending] = {}
        self._rr: dict[str, int] = {}
        self._nc: NatsClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._stopping = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._node_waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self.metrics = metrics
        if metrics is not None:
            metrics.gauge("context_requests_in_flight", lambda: self._in_flight)
            metrics.gauge("context_calls_pending", lambda: len(self._pending))
            metrics.gauge("context_registry_nodes", lambda: len(self.nodes))

    # ---- lifecycle ----

    @property
    def connected(self) -> bool:
        """The NATS connection is up (not connecting, reconnecting, draining or closed)."""
        return self._nc is not None and self._nc.is_connected and not self._stopping

    def add_service(self, service: ServiceDef) -> None:
        self.services.append(service)

    async def start(self) -> None:
        self._nc = await nats.connect(
            self.transporter_url,
            name=self.node_id,
            max_reconnect_attempts=-1,
            reconnected_cb=self._on_reconnected,
        )
        for cmd in ("EVENT", "REQ", "RES", "DISCOVER", "INFO", "HEARTBEAT", "PING", "PONG"):
            await self._nc.subscribe(self._topic(cmd, self.node_id), cb=self._on_message)
        for cmd in ("EVENT", "DISCOVER", "INFO", "DISCONNECT", "HEARTBEAT", "PING"):
            await self._nc.subscribe(self._topic(cmd), cb=self._on_message)
        await self._nc.flush()
        await self._publish("DISCOVER", None, {})
        await self._publish("INFO", None, self._info())
        self._timer = asyncio.create_task(self._heartbeat_loop())
        log.info("node %s joined namespace %r on %s", self.node_id, self.namespace, self.transporter_url)

    async def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Say goodbye first (callers stop choosing this node), then let in-flight requests finish."""
        if self._stopping:
            return
        self._stopping = True
        if self._timer:
            self._timer.cancel()
        try:
            await self._publish("DISCONNECT", None, {})
            if self._nc:
                await self._nc.flush(timeout=2)
        except Exception as err:  # the goodbye is best effort: the heartbeat timeout covers a lost one
            log.warning("could not send DISCONNECT: %s", err)
        try:
            await asyncio.wait_for(self._idle.wait(), drain_timeout_s)
        except TimeoutError:
            log.warning("stopping with %d requests still running", self._in_flight)
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(service_not_available(pending.action, pending.node_id))
        self._pending.clear()
        if self._nc:
            with contextlib.suppress(Exception):  # already closed
                await self._nc.drain()
        log.info("node %s left", self.node_id)

    async def _on_reconnected(self) -> None:
        if self.metrics is not None:
            self.metrics.reconnects.inc()
        await self._publish("DISCOVER", None, {})
        await self._publish("INFO", None, self._info())

    # ---- outgoing ----

    def _topic(self, cmd: str, node_id: str | None = None) -> str:
        return f"{self.prefix}.{cmd}" + (f".{node_id}" if node_id else "")

    async def _publish(self, cmd: str, target: str | None, payload: dict[str, Any]) -> None:
        if not self._nc or self._nc.is_closed:
            return
        body = dict(payload)
        body["ver"] = PROTOCOL_VERSION
        body["sender"] = self.node_id
        await self._nc.publish(self._topic(cmd, target), json.dumps(body, separators=(",", ":")).encode())

    def _info(self) -> dict[str, Any]:
        services = []
        for s in self.services:
            services.append(
                {
                    "name": s.name,
                    "fullName": s.name,
                    "settings": {},
                    "metadata": {},
                    "actions": {
                        f"{s.name}.{a}": {
                            "name": f"{s.name}.{a}",
                            "rawName": a,
                            "visibility": s.visibility,
                            **({"retryPolicy": {"enabled": True}} if a in s.idempotent else {}),
                        }
                        for a in s.actions
                    },
                    "events": {e: {"name": e, "group": s.name} for e in s.events},
                }
            )
        return {
            "services": services,
            "ipList": [],
            "hostname": socket.gethostname(),
            "client": {"type": "python", "version": "0.1.0", "langVersion": sys.version.split()[0]},
            "config": {},
            "instanceID": self.instance_id,
            "metadata": {"services": [s.name for s in self.services], "language": "python", "pid": os.getpid()},
            "seq": 1,
        }

    def nodes_with_action(self, action: str) -> list[str]:
        now = time.monotonic()
        return sorted(
            n.node_id
            for n in self.nodes.values()
            if action in n.actions and now - n.last_seen <= self.heartbeat_timeout_s
        )

    async def call(
        self,
        action: str,
        params: dict[str, Any],
        *,
        timeout_s: float | None = None,
        meta: dict[str, Any] | None = None,
        level: int = 1,
        request_id: str | None = None,
        node_id: str | None = None,
    ) -> Any:
        """Calls a remote action on one of the nodes offering it (round robin), like Moleculer does."""
        if self.metrics is None:
            return await self._call(action, params, timeout_s, meta, level, request_id, node_id)
        with self.metrics.timed(self.metrics.call_seconds, action=action):
            return await self._call(action, params, timeout_s, meta, level, request_id, node_id)

    async def _call(
        self,
        action: str,
        params: dict[str, Any],
        timeout_s: float | None,
        meta: dict[str, Any] | None,
        level: int,
        request_id: str | None,
        node_id: str | None,
    ) -> Any:
        candidates = [node_id] if node_id else self.nodes_with_action(action)
        if not candidates:
            raise service_not_found(action)
        turn = self._rr.get(action, 0)
        self._rr[action] = turn + 1
        target = candidates[turn % len(candidates)]
        timeout = self.request_timeout_s if timeout_s is None else timeout_s
        req_id = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = _Pending(future, target, action)
        try:
            await self._publish(
                "REQ",
                target,
                {
                    "id": req_id,
                    "action": action,
                    "params": params,
                    "meta": meta or {},
                    "headers": {},
                    "timeout": int(timeout * 1000),
                    "level": level,
                    "tracing": None,
                    "parentID": None,
                    "requestID": request_id or req_id,
                    "caller": None,
                    "stream": False,
                },
            )
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise request_timeout(action, target) from None
        finally:
            self._pending.pop(req_id, None)

    async def emit(self, event: str, data: Any) -> None:
        """Balanced event: one node per group subscribed to it (Moleculer's `emit`)."""
        by_group: dict[str, list[str]] = {}
        for n in self.nodes.values():
            for name, groups in n.events.items():
                if _event_matches(name, event):
                    for g in groups:
                        by_group.setdefault(g, []).append(n.node_id)
        for group, node_ids in sorted(by_group.items()):
            node_ids.sort()
            turn = self._rr.get(f"event:{group}:{event}", 0)
            self._rr[f"event:{group}:{event}"] = turn + 1
            target = node_ids[turn % len(node_ids)]
            await self._publish(
                "EVENT",
                target,
                {
                    "id": uuid.uuid4().hex,
                    "event": event,
                    "data": data,
                    "groups": [group],
                    "broadcast": False,
                    "meta": {},
                    "headers": {},
                    "level": 1,
                    "tracing": None,
                    "parentID": None,
                    "requestID": None,
                    "caller": None,
                    "needAck": False,
                },
            )

    async def wait_for_nodes(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Waits until the registry satisfies `predicate` (e.g. a service is known)."""
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._node_waiters.append((predicate, future))
        await asyncio.wait_for(future, timeout_s)

    def _registry_changed(self) -> None:
        still: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        for predicate, future in self._node_waiters:
            if future.done():
                continue
            if predicate():
                future.set_result(None)
            else:
                still.append((predicate, future))
        self._node_waiters = still

    # ---- incoming ----

    async def _on_message(self, msg: Msg) -> None:
        try:
            cmd = msg.subject[len(self.prefix) + 1 :].split(".", 1)[0]
            payload = json.loads(msg.data)
            if not isinstance(payload, dict):
                return
            if payload.get("ver") != PROTOCOL_VERSION:
                log.warning("dropped %s from %s: protocol %r", cmd, payload.get("sender"), payload.get("ver"))
                return
            sender = payload.get("sender")
            if not isinstance(sender, str):
                return
            if sender == self.node_id and cmd not in ("REQ", "RES", "EVENT"):
                return
            await self._dispatch(cmd, sender, payload)
        except Exception:  # one bad packet must never take the node down
            log.exception("failed to process a packet on %s", msg.subject)

    async def _dispatch(self, cmd: str, sender: str, payload: dict[str, Any]) -> None:
        if cmd == "REQ":
            self._spawn(self._handle_request(sender, payload))
        elif cmd == "RES":
            self._handle_response(sender, payload)
        elif cmd == "EVENT":
            self._spawn(self._handle_event(sender, payload))
        elif cmd == "DISCOVER":
            await self._publish("INFO", sender, self._info())
        elif cmd == "INFO":
            self._handle_info(sender, payload)
        elif cmd == "HEARTBEAT":
            node = self.nodes.get(sender)
            if node is None:
                await self._publish("DISCOVER", sender, {})
            else:
                node.last_seen = time.monotonic()
        elif cmd == "DISCONNECT":
            self._node_gone(sender, "disconnected")
        elif cmd == "PING":
            await self._publish(
                "PONG",
                sender,
                {"time": payload.get("time"), "id": payload.get("id"), "arrived": int(time.time() * 1000)},
            )

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _handle_info(self, sender: str, payload: dict[str, Any]) -> None:
        actions: set[str] = set()
        events: dict[str, set[str]] = {}
        for svc in payload.get("services") or []:
            if not isinstance(svc, dict):
                continue
            svc_name = str(svc.get("fullName") or svc.get("name") or "")
            if svc_name.startswith("$"):
                continue
            for name, a in (svc.get("actions") or {}).items():
                if isinstance(a, dict) and a.get("visibility") in ("private", "protected"):
                    continue
                actions.add(name)
            for name, e in (svc.get("events") or {}).items():
                group = (e.get("group") if isinstance(e, dict) else None) or svc_name
                events.setdefault(name, set()).add(str(group))
        known = self.nodes.get(sender)
        self.nodes[sender] = RemoteNode(
            node_id=sender,
            instance_id=str(payload.get("instanceID") or ""),
            actions=actions,
            events=events,
            last_seen=time.monotonic(),
            seq=int(payload.get("seq") or 1),
        )
        if known is None:
            log.info("node %s connected (%d actions)", sender, len(actions))
        self._registry_changed()

    def _node_gone(self, node_id: str, why: str) -> None:
        if self.nodes.pop(node_id, None) is None:
            return
        log.info("node %s %s", node_id, why)
        if self.metrics is not None:
            reason = "disconnected" if why == "disconnected" else "heartbeat_timeout"
            self.metrics.nodes_dropped.labels(reason=reason).inc()
        for pending in list(self._pending.values()):
            if pending.node_id == node_id and not pending.future.done():
                pending.future.set_exception(service_not_available(pending.action, node_id))
        self._registry_changed()

    def _handle_response(self, sender: str, payload: dict[str, Any]) -> None:
        pending = self._pending.get(str(payload.get("id")))
        if pending is None or pending.future.done():
            return
        if payload.get("success"):
            pending.future.set_result(payload.get("data"))
        else:
            error = payload.get("error")
            pending.future.set_exception(MoleculerError.from_plain(error if isinstance(error, dict) else {}, sender))

    def _failure(self, req_id: Any, meta: dict[str, Any], err: MoleculerError) -> dict[str, Any]:
        """The RESPONSE packet of a request that failed with `err`."""
        return {
            "id": req_id,
            "meta": meta,
            "headers": {},
            "success": False,
            "data": None,
            "error": err.to_plain(self.node_id),
        }

    def _local_action(self, name: str) -> ActionHandler | None:
        for s in self.services:
            prefix = s.name + "."
            if name.startswith(prefix) and name[len(prefix) :] in s.actions:
                return s.actions[name[len(prefix) :]]
        return None

    async def _handle_request(self, sender: str, payload: dict[str, Any]) -> None:
        req_id = payload.get("id")
        action = str(payload.get("action"))
        meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
        assert isinstance(meta, dict)
        self._in_flight += 1
        self._idle.clear()
        started = time.perf_counter()
        handler = self._local_action(action)
        failure: BaseException | None = None
        try:
            if self._stopping or handler is None:
                raise service_not_available(action, self.node_id)
            params = payload.get("params")
            ctx = Context(
                broker=self,
                action=action,
                params=params if isinstance(params, dict) else {},
                meta=meta,
                caller_node=sender,
                request_id=payload.get("requestID"),
                level=int(payload.get("level") or 1),
            )
            timeout_ms = payload.get("timeout")
            if isinstance(timeout_ms, (int, float)) and timeout_ms > 0:
                data = await asyncio.wait_for(handler(ctx), timeout_ms / 1000)
            else:
                data = await handler(ctx)
            response: dict[str, Any] = {"id": req_id, "meta": meta, "headers": {}, "success": True, "data": data}
        except MoleculerError as err:
            failure = err
            response = self._failure(req_id, meta, err)
        except TimeoutError:
            failure = request_timeout(action, self.node_id)
            response = self._failure(req_id, meta, failure)
        except Exception as exc:  # an unexpected failure is a 500 with no internals in the message
            failure = exc
            log.exception("action %s failed", action)
            internal = MoleculerError(
                "Internal error in the context service",
                500,
                "INTERNAL_ERROR",
                {"error": type(exc).__name__},
                name="MoleculerServerError",
            )
            response = self._failure(req_id, meta, internal)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        # only this node's own actions are counted: an unknown name from the wire is no label value
        if self.metrics is not None and handler is not None:
            outcome = outcome_of(failure)
            self.metrics.actions.labels(action=action, outcome=outcome).inc()
            self.metrics.action_seconds.labels(action=action, outcome=outcome).observe(time.perf_counter() - started)
        await self._publish("RES", sender, response)

    async def _handle_event(self, sender: str, payload: dict[str, Any]) -> None:
        event = str(payload.get("event"))
        groups = payload.get("groups")
        for s in self.services:
            if isinstance(groups, list) and groups and s.name not in groups:
                continue
            for name, handler in s.events.items():
                if _event_matches(name, event):
                    data = payload.get("data")
                    try:
                        await handler(data if isinstance(data, dict) else {}, sender)
                    except Exception:
                        log.exception("event handler %s failed", name)

    async def _heartbeat_loop(self) -> None:
        while not self._stopping:
            before = time.monotonic()
            await asyncio.sleep(self.heartbeat_interval_s)
            try:
                await self._publish("HEARTBEAT", None, {"cpu": 0})
            except Exception as err:
                log.warning("heartbeat failed: %s", err)
            now = time.monotonic()
            if now - before > 2 * self.heartbeat_interval_s:
                # this node's own loop was held up: the others' heartbeats wait unread in its buffer, so
                # their silence is its own; check again once they are read
                continue
            for node in list(self.nodes.values()):
                if now - node.last_seen > self.heartbeat_timeout_s:
                    self._node_gone(node.node_id, "heartbeat timed out")


def _event_matches(pattern: str, event: str) -> bool:
    """Moleculer's event name match: exact, `*` within a segment, `**` across segments."""
    if pattern == event or pattern == "**":
        return True
    if "*" not in pattern:
        return False
    import re

    rx = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^.]*")
    return re.fullmatch(rx, event) is not None
