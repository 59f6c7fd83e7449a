"""The service's PostgreSQL tables (prefix `context_`), its migrations, and the queries on them.

Everything here can be rebuilt from the projects' blobs: drop the tables and re-index.
- context_blobs: per (blob hash, language) the parsed facts and the text, shared by every version and
  project that holds the same content (an unchanged file is never parsed again);
- context_versions: per project version the file list (path, hash, size, version it last changed in)
  and how indexing went.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_context_tables",
        """
        CREATE TABLE context_blobs (
            sha256 TEXT NOT NULL,
            language TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('parsed', 'binary', 'too_large')),
            facts JSONB,
            content TEXT,
            parsed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (sha256, language)
        );
        CREATE TABLE context_versions (
            project_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            files INTEGER NOT NULL,
            parsed INTEGER NOT NULL,
            reused INTEGER NOT NULL,
            skipped INTEGER NOT NULL,
            took_ms INTEGER NOT NULL,
            manifest JSONB NOT NULL,
            indexed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (project_id, version)
        );
        """,
    ),
]
# Any fixed number: the service's own advisory lock, so two nodes starting together migrate once.
MIGRATION_LOCK = 0x636F6E74


@dataclass
class IndexCounts:
    """What one indexing run of a project version did."""

    project_id: str
    version: int
    files: int
    parsed: int
    reused: int
    skipped: int
    took_ms: int


@dataclass
class VersionRow(IndexCounts):
    manifest: list[list[Any]]  # [path, sha256, size, changed_at]
    indexed_at: str


async def connect(url: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=5)
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool) -> list[str]:
    applied: list[str] = []
    async with pool.acquire() as con, con.transaction():
        await con.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await con.execute(
            "CREATE TABLE IF NOT EXISTS context_migrations (id TEXT PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {r["id"] for r in await con.fetch("SELECT id FROM context_migrations")}
        for mid, sql in MIGRATIONS:
            if mid in done:
                continue
            await con.execute(sql)
            await con.execute("INSERT INTO context_migrations (id) VALUES ($1)", mid)
            applied.append(mid)
    return applied


async def known_blobs(
    pool: asyncpg.Pool, keys: Iterable[tuple[str, str]], parser_version: int = 1
) -> set[tuple[str, str]]:
    """The keys whose blob needs no parsing: skipped ones, and parsed ones whose facts come from
    `parser_version` or later (facts without a version are version 1)."""
    keys = list(keys)
    if not keys:
        return set()
    rows = await pool.fetch(
        "SELECT b.sha256, b.language FROM context_blobs b"
        " JOIN unnest($1::text[], $2::text[]) AS k(sha256, language) USING (sha256, language)"
        " WHERE b.status <> 'parsed' OR COALESCE((b.facts->>'v')::int, 1) >= $3",
        [k[0] for k in keys],
        [k[1] for k in keys],
        parser_version,
    )
    return {(r["sha256"], r["language"]) for r in rows}


async def save_blobs(pool: asyncpg.Pool, rows: list[tuple[str, str, str, dict[str, Any] | None, str | None]]) -> None:
    if not rows:
        return
    await pool.executemany(
        "INSERT INTO context_blobs (sha256, language, status, facts, content) VALUES ($1, $2, $3, $4::jsonb, $5)"
        # a blob parsed again by a newer parser replaces the older facts; otherwise the first row stays
        " ON CONFLICT (sha256, language) DO UPDATE SET status = EXCLUDED.status, facts = EXCLUDED.facts,"
        " content = EXCLUDED.content, parsed_at = now()"
        " WHERE context_blobs.status = 'parsed' AND EXCLUDED.status = 'parsed'"
        " AND COALESCE((context_blobs.facts->>'v')::int, 1) < COALESCE((EXCLUDED.facts->>'v')::int, 1)",
        [
            (sha, lang, status, json.dumps(facts) if facts is not None else None, content)
            for sha, lang, status, facts, content in rows
        ],
    )


async def load_facts(pool: asyncpg.Pool, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    if not keys:
        return {}
    rows = await pool.fetch(
        "SELECT b.sha256, b.language, b.facts FROM context_blobs b"
        " JOIN unnest($1::text[], $2::text[]) AS k(sha256, language) USING (sha256, language)"
        " WHERE b.status = 'parsed'",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r["sha256"], r["language"]): json.loads(r["facts"]) for r in rows}


async def load_texts(pool: asyncpg.Pool, shas: list[str]) -> dict[str, str]:
    if not shas:
        return {}
    rows = await pool.fetch(
        "SELECT DISTINCT ON (sha256) sha256, content FROM context_blobs"
        " WHERE sha256 = ANY($1::text[]) AND content IS NOT NULL",
        shas,
    )
    return {r["sha256"]: r["content"] for r in rows}


async def save_version(pool: asyncpg.Pool, row: VersionRow) -> None:
    await pool.execute(
        "INSERT INTO context_versions (project_id, version, files, parsed, reused, skipped, took_ms, manifest)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)"
        " ON CONFLICT (project_id, version) DO UPDATE SET files = EXCLUDED.files, manifest = EXCLUDED.manifest,"
        " parsed = EXCLUDED.parsed, reused = EXCLUDED.reused, skipped = EXCLUDED.skipped,"
        " took_ms = EXCLUDED.took_ms, indexed_at = now()",
        row.project_id,
        row.version,
        row.files,
        row.parsed,
        row.reused,
        row.skipped,
        row.took_ms,
        json.dumps(row.manifest),
    )


def _row(r: asyncpg.Record) -> VersionRow:
    return VersionRow(
        project_id=r["project_id"],
        version=r["version"],
        files=r["files"],
        parsed=r["parsed"],
        reused=r["reused"],
        skipped=r["skipped"],
        took_ms=r["took_ms"],
        manifest=json.loads(r["manifest"]) if r.get("manifest") is not None else [],
        indexed_at=r["indexed_at"].isoformat(),
    )


async def load_version(pool: asyncpg.Pool, project_id: str, version: int) -> VersionRow | None:
    r = await pool.fetchrow(
        "SELECT * FROM context_versions WHERE project_id = $1 AND version = $2", project_id, version
    )
    return _row(r) if r else None


async def previous_version(pool: asyncpg.Pool, project_id: str, version: int) -> VersionRow | None:
    r = await pool.fetchrow(
        "SELECT * FROM context_versions WHERE project_id = $1 AND version < $2 ORDER BY version DESC LIMIT 1",
        project_id,
        version,
    )
    return _row(r) if r else None


async def versions_of(pool: asyncpg.Pool, project_id: str, limit: int = 20) -> list[VersionRow]:
    rows = await pool.fetch(
        "SELECT project_id, version, files, parsed, reused, skipped, took_ms, indexed_at FROM context_versions"
        " WHERE project_id = $1 ORDER BY version DESC LIMIT $2",
        project_id,
        limit,
    )
    return [_row(r) for r in rows]
