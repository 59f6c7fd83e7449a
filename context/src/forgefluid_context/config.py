"""Configuration from the environment, validated once at start; every message names its variable."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Config:
    transporter: str
    namespace: str
    node_id: str
    database_url: str
    log_level: str
    request_timeout_s: float
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    max_file_bytes: int
    fetch_batch_bytes: int
    cache_versions: int
    projects_timeout_s: float
    health_port: int  # 0: no health server
    health_host: str
    metrics_port: int  # 0: no /metrics


LOG_LEVELS = ("fatal", "error", "warn", "info", "debug", "trace")


def _number(env: Mapping[str, str], name: str, default: float, lo: float, hi: float, errors: list[str]) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        errors.append(f"{name} must be a number (got {raw!r})")
        return default
    if not lo <= value <= hi:
        errors.append(f"{name} must be between {lo:g} and {hi:g} (got {raw})")
    return value


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Reads and checks every variable; raises ConfigError listing all problems at once."""
    env = os.environ if env is None else env
    errors: list[str] = []
    transporter = env.get("TRANSPORTER", "")
    if not transporter:
        errors.append("TRANSPORTER is required (a nats:// URL: the context service is always a remote node)")
    elif not re.match(r"^nats://[^\s]+$", transporter):
        errors.append(f"TRANSPORTER must be a nats:// URL (got {transporter!r})")
    database_url = env.get("DATABASE_URL", "")
    if not database_url:
        errors.append("DATABASE_URL is required (postgres://...)")
    elif not re.match(r"^postgres(ql)?://", database_url):
        errors.append("DATABASE_URL must be a postgres:// URL")
    namespace = env.get("NAMESPACE", "")
    if not re.match(r"^[A-Za-z0-9_.-]*$", namespace):
        errors.append(f"NAMESPACE may hold letters, digits, '_', '-' and '.' only (got {namespace!r})")
    node_id = env.get("NODE_ID") or f"{socket.gethostname()}-context-{os.getpid()}"
    if not re.match(r"^[A-Za-z0-9_.:-]{1,128}$", node_id):
        errors.append(f"NODE_ID may hold letters, digits, '_', '-', ':' and '.' only (got {node_id!r})")
    log_level = (env.get("LOG_LEVEL") or "info").lower()
    if log_level not in LOG_LEVELS:
        errors.append(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)} (got {log_level!r})")
    request_timeout_s = _number(env, "REQUEST_TIMEOUT_MS", 10_000, 100, 600_000, errors) / 1000
    # The TS nodes' defaults (src/config.ts): the TS side drops a node silent for HEARTBEAT_TIMEOUT_S,
    # so a Python node beating more slowly than that is dropped and rediscovered over and over.
    hb_interval = _number(env, "HEARTBEAT_INTERVAL_S", 1, 0.1, 300, errors)
    hb_timeout = _number(env, "HEARTBEAT_TIMEOUT_S", 3, 0.3, 3600, errors)
    if hb_timeout <= hb_interval:
        errors.append("HEARTBEAT_TIMEOUT_S must be greater than HEARTBEAT_INTERVAL_S")
    max_file = int(_number(env, "CONTEXT_MAX_FILE_BYTES", 512 * 1024, 1024, 8 * 1024 * 1024, errors))
    batch = int(_number(env, "CONTEXT_FETCH_BATCH_BYTES", 512 * 1024, 16 * 1024, 8 * 1024 * 1024, errors))
    cache_versions = int(_number(env, "CONTEXT_CACHE_VERSIONS", 8, 1, 1000, errors))
    projects_timeout_s = _number(env, "CONTEXT_PROJECTS_TIMEOUT_MS", 10_000, 50, 600_000, errors) / 1000
    health_port = int(_number(env, "HEALTH_PORT", 0, 0, 65535, errors))
    health_host = env.get("HEALTH_HOST") or "0.0.0.0"
    metrics_port = int(_number(env, "METRICS_PORT", 0, 0, 65535, errors))
    if metrics_port and metrics_port == health_port:
        errors.append("METRICS_PORT must differ from HEALTH_PORT")
    if errors:
        raise ConfigError("invalid configuration: " + "; ".join(errors))
    return Config(
        transporter=transporter,
        namespace=namespace,
        node_id=node_id,
        database_url=database_url,
        log_level=log_level,
        request_timeout_s=request_timeout_s,
        heartbeat_interval_s=hb_interval,
        heartbeat_timeout_s=hb_timeout,
        max_file_bytes=max_file,
        fetch_batch_bytes=batch,
        cache_versions=cache_versions,
        projects_timeout_s=projects_timeout_s,
        health_port=health_port,
        health_host=health_host,
        metrics_port=metrics_port,
    )
