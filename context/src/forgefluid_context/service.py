"""The `context` service: a thin shell. Each action validates its params, asks projects for access
and content over the transporter, and calls the engine.

Actions (visibility public: callable from other nodes, never published by the gateway):
- context.select({ projectId, version?, query, budgetTokens, include?, exclude?, userId })
- context.index({ projectId, version? })           idempotent; what the durable event consumer calls
- context.status({ projectId, userId? })
Events: handles `context.index.requested` ({ projectId, version }); emits `context.indexed` after each index.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from .engine import Engine, SourceFile
from .errors import MoleculerError, client_error, validation_error
from .moleculer import Broker, Context, ServiceDef

log = logging.getLogger("forgefluid_context.service")

MAX_BUDGET = 1_000_000
MAX_QUERY = 100_000
MAX_GLOBS = 200


def _problems_to_error(problems: list[dict[str, Any]]) -> MoleculerError:
    return validation_error("Parameters validation error!", problems)


def _str(
    params: dict[str, Any], name: str, problems: list[dict[str, Any]], *, lo: int, hi: int, optional: bool = False
) -> str:
    v = params.get(name)
    if v is None and optional:
        return ""
    if not isinstance(v, str):
        problems.append({"field": name, "message": f"The '{name}' field must be a string.", "type": "string"})
        return ""
    if not lo <= len(v) <= hi:
        problems.append(
            {"field": name, "message": f"The '{name}' field length must be {lo}..{hi}.", "type": "stringLength"}
        )
    return v


def _int(
    params: dict[str, Any], name: str, problems: list[dict[str, Any]], *, lo: int, hi: int, optional: bool = False
) -> int | None:
    v = params.get(name)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            problems.append({"field": name, "message": f"The '{name}' field must be an integer.", "type": "number"})
            return None
    if not lo <= v <= hi:
        problems.append(
            {"field": name, "message": f"The '{name}' field must be between {lo} and {hi}.", "type": "numberRange"}
        )
    return v


def _globs(params: dict[str, Any], name: str, problems: list[dict[str, Any]]) -> list[str]:
    v = params.get(name)
    if v is None:
        return []
    if not isinstance(v, list) or len(v) > MAX_GLOBS or not all(isinstance(g, str) and 0 < len(g) <= 1024 for g in v):
        problems.append(
            {
                "field": name,
                "message": f"The '{name}' field must be a list of at most {MAX_GLOBS} path globs.",
                "type": "array",
            }
        )
        return []
    return list(v)


def translate_projects_error(err: MoleculerError) -> MoleculerError:
    """projects says NOT_FOUND for both a project and a version; the contract names which."""
    if err.type == "NOT_FOUND" or err.code == 404:
        data = err.data if isinstance(err.data, dict) else {}
        if data.get("field") == "version" or "Version" in err.message:
            return client_error("Version not found", 404, "VERSION_NOT_FOUND", data or None)
        if err.name in ("ServiceNotFoundError", "ServiceNotAvailableError"):
            return MoleculerError(
                "The projects service is not available",
                503,
                "SERVICE_UNAVAILABLE",
                name="MoleculerServerError",
                retryable=True,
            )
        return client_error("Project not found", 404, "PROJECT_NOT_FOUND", None)
    return err


class ProjectsSource:
    """One version's files and blobs, read from the projects service over the transporter."""

    def __init__(
        self,
        broker: Broker,
        project_id: str,
        version: int | None,
        user_id: str | None,
        timeout_s: float,
        batch_files: int = 500,
    ) -> None:
        self.timeout_s = timeout_s
        self.broker = broker
        self.project_id = project_id
        self.version = version
        self.user_id = user_id
        self.batch_files = batch_files
        self.resolved: int | None = None

    async def _call(self, action: str, params: dict[str, Any]) -> Any:
        try:
            return await self.broker.call(action, params, timeout_s=self.timeout_s)
        except MoleculerError as err:
            raise translate_projects_error(err) from None

    async def files(self) -> tuple[int, list[SourceFile]]:
        out: list[SourceFile] = []
        offset = 0
        while True:
            params: dict[str, Any] = {"projectId": self.project_id, "offset": offset, "limit": 2000}
            if self.version is not None:
                params["version"] = self.version
            if self.user_id:
                params["userId"] = self.user_id
            page = await self._call("projects.contextManifest", params)
            # pin the version the first page resolved to, so later pages read the same one
            self.version = self.resolved = int(page["version"])
            out.extend(SourceFile(f["path"], f["sha256"], int(f["size"])) for f in page["files"])
            offset += len(page["files"])
            if not page["files"] or offset >= int(page["total"]):
                return self.resolved, out

    async def blobs(self, sha256: list[str]) -> dict[str, bytes]:
        assert self.resolved is not None
        out: dict[str, bytes] = {}
        for i in range(0, len(sha256), self.batch_files):
            res = await self._call(
                "projects.contextBlobs",
                {"projectId": self.project_id, "version": self.resolved, "sha256": sha256[i : i + self.batch_files]},
            )
            for b in res["blobs"]:
                out[b["sha256"]] = base64.b64decode(b["base64"])
        return out


def context_service(broker: Broker, engine: Engine, projects_timeout_s: float) -> ServiceDef:
    metrics = broker.metrics
    if metrics is not None:
        metrics.gauge("context_indexing_versions", lambda: engine.indexing)
        metrics.gauge("context_version_indexes", lambda: engine.sizes()[0])
        metrics.gauge("context_version_index_files", lambda: engine.sizes()[1])
        metrics.gauge("context_file_facts_cached", lambda: engine.sizes()[2])

    async def index_version(project_id: str, version: int | None, user_id: str | None = None) -> dict[str, Any]:
        source = ProjectsSource(broker, project_id, version, user_id, projects_timeout_s)
        if metrics is None:
            result = await engine.index(project_id, source)
        else:
            with metrics.timed(metrics.index_seconds):
                result = await engine.index(project_id, source)
            metrics.index_files.labels(result="parsed").inc(result.parsed)
            metrics.index_files.labels(result="reused").inc(result.reused)
            metrics.index_files.labels(result="skipped").inc(result.skipped)
        view = result.view()
        try:
            await broker.emit("context.indexed", view)
        except Exception as err:  # a lost notification is not a failed index
            log.warning("could not emit context.indexed: %s", err)
        return view

    async def select(ctx: Context) -> dict[str, Any]:
        p = ctx.params
        problems: list[dict[str, Any]] = []
        project_id = _str(p, "projectId", problems, lo=1, hi=64)
        user_id = _str(p, "userId", problems, lo=1, hi=128)
        query = _str(p, "query", problems, lo=0, hi=MAX_QUERY)
        version = _int(p, "version", problems, lo=0, hi=2_147_483_647, optional=True)
        budget = _int(p, "budgetTokens", problems, lo=1, hi=MAX_BUDGET)
        include = _globs(p, "include", problems)
        exclude = _globs(p, "exclude", problems)
        if problems:
            raise _problems_to_error(problems)
        assert budget is not None
        try:
            access = await broker.call(
                "projects.access",
                {"projectId": project_id, "userId": user_id},
                timeout_s=projects_timeout_s,
                meta=ctx.meta,
            )
        except MoleculerError as err:
            raise translate_projects_error(err) from None
        head = int(access["headVersion"])
        if version is None:
            version = head
        elif version > head:
            raise client_error(
                "Version not found",
                404,
                "VERSION_NOT_FOUND",
                {"field": "version", "reason": f"the project's latest version is {head}"},
            )
        if not await engine.is_indexed(project_id, version):
            await index_version(project_id, version, user_id)
        return await engine.select(project_id, version, query, budget, include, exclude)

    async def index(ctx: Context) -> dict[str, Any]:
        problems: list[dict[str, Any]] = []
        project_id = _str(ctx.params, "projectId", problems, lo=1, hi=64)
        version = _int(ctx.params, "version", problems, lo=0, hi=2_147_483_647, optional=True)
        if problems:
            raise _problems_to_error(problems)
        return await index_version(project_id, version)

    async def status(ctx: Context) -> dict[str, Any]:
        problems: list[dict[str, Any]] = []
        project_id = _str(ctx.params, "projectId", problems, lo=1, hi=64)
        user_id = _str(ctx.params, "userId", problems, lo=1, hi=128, optional=True)
        if problems:
            raise _problems_to_error(problems)
        if user_id:
            try:
                await broker.call(
                    "projects.access", {"projectId": project_id, "userId": user_id}, timeout_s=projects_timeout_s
                )
            except MoleculerError as err:
                raise translate_projects_error(err) from None
        from . import store

        rows = await store.versions_of(engine.pool, project_id)
        return {
            "projectId": project_id,
            "indexedVersions": [
                {
                    "version": r.version,
                    "files": r.files,
                    "parsed": r.parsed,
                    "reused": r.reused,
                    "skipped": r.skipped,
                    "tookMs": r.took_ms,
                    "indexedAt": r.indexed_at,
                }
                for r in rows
            ],
            "latest": rows[0].version if rows else None,
            "node": broker.node_id,
        }

    async def on_index_requested(data: dict[str, Any], _sender: str | None) -> None:
        project_id = data.get("projectId")
        version = data.get("version")
        if isinstance(project_id, str) and (version is None or isinstance(version, int)):
            try:
                await index_version(project_id, version)
            except MoleculerError as err:
                log.warning("index of %s v%s requested by event failed: %s", project_id, version, err.message)

    return ServiceDef(
        name="context",
        actions={"select": select, "index": index, "status": status},
        events={"context.index.requested": on_index_requested},
        # all three are safe to run twice: select and status read, index is idempotent
        idempotent=frozenset({"select", "index", "status"}),
    )
