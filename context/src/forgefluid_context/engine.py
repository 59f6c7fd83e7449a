"""Indexing and selection over the store: the use cases the actions wire up.

A `BlobSource` gives one version's file list and blob contents. In the service it is the projects
service over the transporter; the benchmark uses a git repository. Indexing streams: the file list is
small, contents come in batches of at most `batch_bytes`, are parsed, written and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from . import store
from .parsing import PARSER_VERSION, FileFacts, language_of, parse_file
from .ranking import IndexedFile, VersionIndex
from .selection import plan, render
from .tokens import TOKENIZER, count_tokens

log = logging.getLogger("forgefluid_context.engine")


@dataclass
class SourceFile:
    path: str
    sha256: str
    size: int


class BlobSource(Protocol):
    async def files(self) -> tuple[int, list[SourceFile]]:
        """The version number and its files."""
        ...

    async def blobs(self, sha256: list[str]) -> dict[str, bytes]: ...


@dataclass
class IndexResult(store.IndexCounts):
    def view(self) -> dict[str, Any]:
        return {
            "projectId": self.project_id,
            "version": self.version,
            "files": self.files,
            "parsed": self.parsed,
            "reused": self.reused,
            "skipped": self.skipped,
            "tookMs": self.took_ms,
        }


def _lang(path: str) -> str:
    return language_of(path) or "text"


def _looks_binary(data: bytes) -> bool:
    return b"\0" in data[:8192]


class Engine:
    def __init__(self, pool: asyncpg.Pool, *, max_file_bytes: int, batch_bytes: int, cache_versions: int) -> None:
        self.pool = pool
        self.max_file_bytes = max_file_bytes
        self.batch_bytes = batch_bytes
        self.cache_versions = cache_versions
        self._indexes: OrderedDict[tuple[str, int], VersionIndex] = OrderedDict()
        self._facts: OrderedDict[tuple[str, str], FileFacts] = OrderedDict()
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        self.indexing = 0  # index() calls running now or waiting for their version's lock

    # ---- indexing ----

    async def index(self, project_id: str, source: BlobSource) -> IndexResult:
        """Idempotent: a version indexed again re-reads its list and parses only unknown blobs."""
        self.indexing += 1
        try:
            return await self._index(project_id, source)
        finally:
            self.indexing -= 1

    def sizes(self) -> tuple[int, int, int]:
        """(version indexes in memory, their files, parsed files' facts in memory)."""
        return len(self._indexes), sum(len(i.files) for i in self._indexes.values()), len(self._facts)

    async def _index(self, project_id: str, source: BlobSource) -> IndexResult:
        started = time.perf_counter()
        version, files = await source.files()
        key = (project_id, version)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            prev = await store.previous_version(self.pool, project_id, version)
            prev_map = {p: (sha, changed) for p, sha, _size, changed in prev.manifest} if prev else {}
            keys = {(f.sha256, _lang(f.path)) for f in files}
            known = await store.known_blobs(self.pool, keys, PARSER_VERSION)
            todo: dict[tuple[str, str], SourceFile] = {}
            for f in files:
                k = (f.sha256, _lang(f.path))
                if k not in known and k not in todo:
                    todo[k] = f
            parsed = skipped = 0
            rows: list[tuple[str, str, str, dict[str, Any] | None, str | None]] = []
            too_large = [k for k, f in todo.items() if f.size > self.max_file_bytes]
            rows.extend((sha, lang, "too_large", None, None) for sha, lang in too_large)
            skipped += len(too_large)
            wanted = [(k, f) for k, f in todo.items() if f.size <= self.max_file_bytes]
            loop = asyncio.get_running_loop()
            for batch in _batches(wanted, self.batch_bytes):
                contents = await source.blobs(sorted({f.sha256 for _k, f in batch}))
                for (sha, lang), f in batch:
                    data = contents.get(sha)
                    if data is None or _looks_binary(data):
                        rows.append((sha, lang, "binary", None, None))
                        skipped += 1
                        continue
                    facts = await loop.run_in_executor(None, parse_file, f.path, data, count_tokens)
                    self._facts.pop((sha, lang), None)  # an older parser's facts, if held
                    rows.append((sha, lang, "parsed", facts.to_json(), data.decode("utf-8", "replace")))
                    parsed += 1
                await store.save_blobs(self.pool, rows)
                rows = []
            await store.save_blobs(self.pool, rows)
            manifest = []
            for f in files:
                before = prev_map.get(f.path)
                changed = before[1] if before and before[0] == f.sha256 else version
                manifest.append([f.path, f.sha256, f.size, changed])
            took_ms = int((time.perf_counter() - started) * 1000)
            result = IndexResult(
                project_id, version, len(files), parsed, len(files) - parsed - skipped, skipped, took_ms
            )
            await store.save_version(
                self.pool,
                store.VersionRow(
                    project_id, version, len(files), parsed, result.reused, skipped, took_ms, manifest, ""
                ),
            )
            self._indexes.pop(key, None)
            log.info(
                "indexed %s v%d: %d files, %d parsed, %d skipped, %d ms",
                project_id,
                version,
                len(files),
                parsed,
                skipped,
                took_ms,
            )
            return result

    async def is_indexed(self, project_id: str, version: int) -> bool:
        return (project_id, version) in self._indexes or await store.load_version(
            self.pool, project_id, version
        ) is not None

    # ---- selection ----

    async def version_index(self, project_id: str, version: int) -> VersionIndex | None:
        key = (project_id, version)
        cached = self._indexes.get(key)
        if cached is not None:
            self._indexes.move_to_end(key)
            return cached
        row = await store.load_version(self.pool, project_id, version)
        if row is None:
            return None
        keys = [(sha, _lang(path)) for path, sha, _size, _changed in row.manifest]
        missing = [k for k in keys if k not in self._facts]
        raw = await store.load_facts(self.pool, missing)
        # Decoding the facts and building the index take seconds for thousands of files: on a worker
        # thread, so the event loop keeps answering (heartbeats, pings, other requests) meanwhile; a
        # loop held past the TS nodes' 3 s heartbeat timeout gets this node dropped by all of them.
        loop = asyncio.get_running_loop()
        decoded = await loop.run_in_executor(None, lambda: {k: FileFacts.from_json(j) for k, j in raw.items()})
        self._facts.update(decoded)
        while len(self._facts) > 200_000:
            self._facts.popitem(last=False)
        files = [
            IndexedFile(path, sha, size, self._facts.get((sha, _lang(path))), changed)
            for path, sha, size, changed in row.manifest
        ]
        index = await loop.run_in_executor(None, VersionIndex, files)
        self._indexes[key] = index
        while len(self._indexes) > self.cache_versions:
            self._indexes.popitem(last=False)
        return index

    async def select(
        self,
        project_id: str,
        version: int,
        query: str,
        budget: int,
        include: Sequence[str],
        exclude: Sequence[str],
    ) -> dict[str, Any]:
        index = await self.version_index(project_id, version)
        if index is None:
            return {
                "projectId": project_id,
                "version": version,
                "budgetTokens": budget,
                "usedTokens": 0,
                "tokenizer": TOKENIZER,
                "indexed": False,
                "frames": [],
            }
        units, map_order = plan(index, query, budget, include, exclude, count_tokens)
        texts = await store.load_texts(self.pool, sorted({index.files[u.file].sha256 for u in units}))
        frames, used = render(index, units, map_order, budget, texts, count_tokens)
        return {
            "projectId": project_id,
            "version": version,
            "budgetTokens": budget,
            "usedTokens": used,
            "tokenizer": TOKENIZER,
            "indexed": True,
            "frames": frames,
        }


def _batches(
    items: list[tuple[tuple[str, str], SourceFile]], max_bytes: int
) -> list[list[tuple[tuple[str, str], SourceFile]]]:
    out: list[list[tuple[tuple[str, str], SourceFile]]] = []
    cur: list[tuple[tuple[str, str], SourceFile]] = []
    size = 0
    for item in items:
        if cur and (size + item[1].size > max_bytes or len(cur) >= 500):
            out.append(cur)
            cur, size = [], 0
        cur.append(item)
        size += item[1].size
    if cur:
        out.append(cur)
    return out
