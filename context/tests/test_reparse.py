"""Indexing against PostgreSQL: facts of an older parser are parsed again, once, and replace the old row.

Needs the PostgreSQL the integration tests use (TEST_PG_ADMIN_URL, default the local server); the test
creates its own database and drops it.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import asyncpg

from forgefluid_context import store
from forgefluid_context.engine import Engine, SourceFile
from forgefluid_context.parsing import PARSER_VERSION

ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")

TEST_FILE = b'describe("the ledger", () => {\n  it("settles a hold", () => {\n    expect(1).toBe(1);\n  });\n});\n'
LIB_FILE = b"export function settle(a: number) {\n  return a;\n}\n"


class Source:
    def __init__(self, version: int, files: dict[str, bytes]) -> None:
        self.version = version
        self.by_sha = {f"sha-{path}-{len(data)}": data for path, data in files.items()}
        self.list = [SourceFile(path, f"sha-{path}-{len(data)}", len(data)) for path, data in files.items()]

    async def files(self) -> tuple[int, list[SourceFile]]:
        return self.version, self.list

    async def blobs(self, sha256: list[str]) -> dict[str, bytes]:
        return {s: self.by_sha[s] for s in sha256}


async def _scenario() -> None:
    db = f"ff_context_reparse_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{db}"')
    pool = await store.connect(ADMIN_URL.rsplit("/", 1)[0] + "/" + db)
    try:
        await store.migrate(pool)
        engine = Engine(pool, max_file_bytes=1 << 20, batch_bytes=1 << 20, cache_versions=2)
        files = {"ledger.test.ts": TEST_FILE, "ledger.ts": LIB_FILE}
        first = await engine.index("p", Source(1, files))
        assert (first.parsed, first.reused) == (2, 0)
        # the rows as an older parser left them: no version, no test definitions
        await pool.execute(
            "UPDATE context_blobs SET facts = (facts - 'v') || jsonb_build_object('definitions', '[]'::jsonb)"
            " WHERE sha256 = $1",
            "sha-ledger.test.ts-" + str(len(TEST_FILE)),
        )
        again = await engine.index("p", Source(2, files))
        assert (again.parsed, again.reused) == (1, 1)  # the old row only
        row = await pool.fetchrow(
            "SELECT facts FROM context_blobs WHERE sha256 = $1", "sha-ledger.test.ts-" + str(len(TEST_FILE))
        )
        facts = json.loads(row["facts"])
        assert facts["v"] == PARSER_VERSION
        assert [d[0] for d in facts["definitions"]] == ["the ledger", "settles a hold"]
        index = await engine.version_index("p", 2)
        assert index is not None
        assert [d.name for d in index.files[index.by_path["ledger.test.ts"]].facts.definitions] == [  # type: ignore[union-attr]
            "the ledger",
            "settles a hold",
        ]
        third = await engine.index("p", Source(3, files))
        assert (third.parsed, third.reused) == (0, 2)  # parsed once, then reused
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()


def test_facts_of_an_older_parser_are_parsed_again_once() -> None:
    asyncio.run(_scenario())
