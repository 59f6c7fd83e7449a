"""bench/context: does the context service put the lines a change touches in front of the model?

Replays this repository's own git history. For each of the last N commits that change code in
existing files, the project holds the commit's parent tree and the commit message is the query. The
truth is the parent's lines that the commit removed or changed (`git diff -U0` hunks, existing files
only). A prompt holds a line only when that line's text is in a content frame (a path in the map does
not count). Reports, side by side in one run, at 8k / 16k / 32k tokens:
- path order: whole files in path order, skipping what does not fit (what projects.readContext does);
- whole-file BM25: files ranked by BM25 over their words, whole files packed in that order;
- the context service: `Engine.select` (the code `context.select` runs) on the indexed version.
changed-line recall (truth lines shown / truth lines, mean over commits, and pooled) and file recall (a
file counts when all its truth lines are shown). Then indexing throughput (cold, and incremental per
commit: the 10-file figure is the median over commits changing 5-15 files) and select p50/p99 on a
5,000-file project (files from node_modules) once indexed.

Run: ./forge bench:context   (or PYTHONPATH=context/src .tools/venv/bin/python bench/context/run.py)
Env: BENCH_COMMITS (default 50), BENCH_REPO (default: this repository), BENCH_SELECTS (default 200),
     TEST_PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres).
Every run uses a fresh database, dropped at the end. Prints the figures and the machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from forgefluid_context import store
from forgefluid_context.engine import Engine, SourceFile
from forgefluid_context.selection import header_tokens
from forgefluid_context.tokens import count_tokens

ROOT = Path(__file__).resolve().parents[2]
REPO = Path(os.environ.get("BENCH_REPO", str(ROOT)))
BUDGETS = (8_000, 16_000, 32_000)
# Generated files are no one's context: their lines are not truth (lockfiles by name, others by
# their header, below).
GENERATED = re.compile(
    r"(^|/)(package-lock\.json|yarn\.lock|pnpm-lock\.yaml|[^/]*\.lock)$"
)
# A commit touching more existing files than this is a sweep (reformat, rename), not a task.
MAX_FILES = 25
CODE = re.compile(r"\.(ts|tsx|js|mjs|cjs|py|go|rs|java|c|h|cc|cpp|rb|php|sh|sql)$")
ADMIN_URL = os.environ.get(
    "TEST_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)


# A file that says it is generated (openapi-typescript's "auto-generated ... Do not make direct
# changes", protoc's "DO NOT EDIT") is rewritten by its generator, not by anyone shown it.
GENERATED_HEADER = re.compile(
    r"auto-?generated|do not (edit|make direct changes)", re.IGNORECASE
)


def generated_header(commit: str, path: str) -> bool:
    head = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{commit}:{path}"],
        capture_output=True,
        check=False,
    ).stdout[:600]
    return bool(GENERATED_HEADER.search(head.decode("utf-8", "replace")))


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True
    ).stdout


class GitTree:
    """A BlobSource over one git tree: `ls-tree` for the list, one `cat-file --batch` for contents."""

    def __init__(self, commit: str, version: int) -> None:
        self.commit = commit
        self.version = version
        self._files: list[SourceFile] | None = None

    async def files(self) -> tuple[int, list[SourceFile]]:
        if self._files is None:
            out = []
            for line in git(
                "ls-tree", "-r", "-l", "--full-tree", self.commit
            ).splitlines():
                meta, path = line.split("\t", 1)
                _mode, kind, sha, size = meta.split()
                if kind == "blob" and size != "-":
                    out.append(SourceFile(path, sha, int(size)))
            self._files = out
        return self.version, self._files

    async def blobs(self, sha256: list[str]) -> dict[str, bytes]:
        return cat_blobs(sha256)


def cat_blobs(shas: list[str]) -> dict[str, bytes]:
    if not shas:
        return {}
    p = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "--batch"],
        input="\n".join(shas).encode() + b"\n",
        capture_output=True,
        check=True,
    )
    out: dict[str, bytes] = {}
    buf = p.stdout
    pos = 0
    while pos < len(buf):
        nl = buf.index(b"\n", pos)
        header = buf[pos:nl].split()
        pos = nl + 1
        if len(header) < 3:
            continue
        size = int(header[2])
        out[header[0].decode()] = buf[pos : pos + size]
        pos += size + 1
    return out


class FsFiles:
    """A BlobSource over files on disk (the 5,000-file project)."""

    def __init__(self, root: Path, paths: list[str], version: int) -> None:
        self.root = root
        self.paths = paths
        self.version = version
        self.by_sha: dict[str, str] = {}

    async def files(self) -> tuple[int, list[SourceFile]]:
        out = []
        for p in self.paths:
            data = (self.root / p).read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            self.by_sha[sha] = p
            out.append(SourceFile(p, sha, len(data)))
        return self.version, out

    async def blobs(self, sha256: list[str]) -> dict[str, bytes]:
        return {s: (self.root / self.by_sha[s]).read_bytes() for s in sha256}


@dataclass
class Case:
    commit: str
    parent: str
    query: str
    truth: dict[str, set[int]]  # path -> parent line numbers removed or changed
    changed_files: int


def cases(limit: int, end: str = "HEAD") -> list[Case]:
    """The last `limit` non-merge commits up to `end` that change code in existing files, oldest first."""
    out: list[Case] = []
    for line in git("log", "--no-merges", "--format=%H %P", end).splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        commit, parent = parts
        diff = git("diff", "-U0", "--no-renames", parent, commit)
        truth: dict[str, set[int]] = {}
        path = None
        changed: set[str] = set()
        for d in diff.splitlines():
            if d.startswith("--- "):
                path = d[6:] if d.startswith("--- a/") else None
            elif d.startswith("+++ b/"):
                changed.add(d[6:])
            elif d.startswith("@@") and path:
                m = re.match(r"@@ -(\d+)(?:,(\d+))? \+", d)
                assert m
                start, count = int(m.group(1)), int(m.group(2) or "1")
                if count:
                    truth.setdefault(path, set()).update(range(start, start + count))
        truth = {
            p: v
            for p, v in truth.items()
            if not GENERATED.search(p) and not generated_header(parent, p)
        }
        if not any(CODE.search(p) for p in truth) or len(truth) > MAX_FILES:
            continue
        message = git("log", "-1", "--format=%B", commit).strip()
        out.append(Case(commit, parent, message, truth, len(changed)))
        if len(out) == limit:
            break
    out.reverse()  # history order: each parent tree indexes incrementally on the previous one
    return out


# ---- baselines ----

_WORDS = re.compile(r"[A-Za-z0-9_]+")


_COSTS: dict[tuple[str, int, int], int] = {}
_DOCS: dict[tuple[str, int, int], Counter[str]] = {}


def frame_cost(path: str, text: str) -> int:
    key = (path, len(text), hash(text))
    cost = _COSTS.get(key)
    if cost is None:
        cost = _COSTS[key] = count_tokens(text) + header_tokens(path, count_tokens)
    return cost


def words(path: str, text: str) -> Counter[str]:
    key = (path, len(text), hash(text))
    doc = _DOCS.get(key)
    if doc is None:
        doc = _DOCS[key] = Counter(w.lower() for w in _WORDS.findall(path + " " + text))
    return doc


def path_order(files: list[tuple[str, str]], budget: int) -> set[str]:
    shown: set[str] = set()
    left = budget
    for path, text in sorted(files):
        cost = frame_cost(path, text)
        if cost <= left:
            shown.add(path)
            left -= cost
    return shown


def bm25_whole(files: list[tuple[str, str]], query: str, budget: int) -> set[str]:
    docs = [words(path, text) for path, text in files]
    avg = sum(sum(d.values()) for d in docs) / max(1, len(docs))
    q = {w.lower() for w in _WORDS.findall(query)}
    n = len(docs)
    df = Counter(t for d in docs for t in q if t in d)
    scores = []
    for i, d in enumerate(docs):
        dl = sum(d.values())
        s = 0.0
        for t in q:
            tf = d.get(t, 0)
            if tf:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / avg))
        scores.append(s)
    shown: set[str] = set()
    left = budget
    for i in sorted(range(n), key=lambda i: -scores[i]):
        if scores[i] <= 0:
            break
        cost = frame_cost(*files[i])
        if cost <= left:
            shown.add(files[i][0])
            left -= cost
    return shown


def recall(case: Case, shown_lines: dict[str, set[int]]) -> tuple[int, int, int, int]:
    lines = sum(len(v) for v in case.truth.values())
    hit = sum(len(v & shown_lines.get(p, set())) for p, v in case.truth.items())
    files_hit = sum(1 for p, v in case.truth.items() if v <= shown_lines.get(p, set()))
    return hit, lines, files_hit, len(case.truth)


def whole(paths: set[str], line_counts: dict[str, int]) -> dict[str, set[int]]:
    return {p: set(range(1, line_counts[p] + 1)) for p in paths}


async def main() -> None:
    limit = int(os.environ.get("BENCH_COMMITS", "50"))
    selects = int(os.environ.get("BENCH_SELECTS", "200"))
    db = f"ff_bench_context_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{db}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + db
    pool = await store.connect(url)
    try:
        await store.migrate(pool)
        engine = Engine(
            pool, max_file_bytes=512 * 1024, batch_bytes=512 * 1024, cache_versions=4
        )
        all_cases = cases(limit)
        print(
            f"bench/context: {len(all_cases)} commits of {REPO.name} that change code in existing files"
        )
        results: dict[str, dict[int, list[tuple[int, int, int, int]]]] = {
            k: {b: [] for b in BUDGETS}
            for k in ("path order", "whole-file BM25", "context service")
        }
        index_times: list[tuple[int, int, int]] = []  # (changed files, ms, parsed)
        cold = None
        for v, case in enumerate(all_cases, start=1):
            t0 = time.perf_counter()
            r = await engine.index("bench", GitTree(case.parent, v))
            ms = (time.perf_counter() - t0) * 1000
            if cold is None:
                cold = (r.files, ms, r.parsed)
            else:
                index_times.append((case.changed_files, int(ms), r.parsed))
            _v, files = await GitTree(case.parent, v).files()
            contents = cat_blobs([f.sha256 for f in files])
            texts = [
                (f.path, contents[f.sha256].decode("utf-8", "replace"))
                for f in files
                if b"\0" not in contents[f.sha256][:8192] and f.size <= 512 * 1024
            ]
            line_counts = {
                p: t.count("\n") + (0 if t.endswith("\n") else 1) for p, t in texts
            }
            for b in BUDGETS:
                results["path order"][b].append(
                    recall(case, whole(path_order(texts, b), line_counts))
                )
                results["whole-file BM25"][b].append(
                    recall(case, whole(bm25_whole(texts, case.query, b), line_counts))
                )
                sel = await engine.select("bench", v, case.query, b, [], [])
                assert sel["usedTokens"] <= b
                shown: dict[str, set[int]] = {}
                for f in sel["frames"]:
                    if f["kind"] != "map":
                        s, e = f["lines"]
                        shown.setdefault(f["path"], set()).update(range(s, e + 1))
                results["context service"][b].append(recall(case, shown))
        print()
        print(
            f"{'':18}"
            + "".join(
                f"{'lines@' + str(b // 1000) + 'k':>11}{'files@' + str(b // 1000) + 'k':>11}"
                for b in BUDGETS
            )
        )
        means: dict[str, dict[int, float]] = {}
        for name, per_budget in results.items():
            row = f"{name:18}"
            means[name] = {}
            for b in BUDGETS:
                rs = per_budget[b]
                line_recall = statistics.mean(h / n for h, n, _fh, _fn in rs)
                file_recall = statistics.mean(fh / fn for _h, _n, fh, fn in rs)
                means[name][b] = line_recall
                row += f"{line_recall:11.3f}{file_recall:11.3f}"
            print(row)
        print("(mean over commits; pooled changed-line recall:", end="")
        for name, per_budget in results.items():
            rs = per_budget[16_000]
            print(
                f" {name} {sum(r[0] for r in rs) / sum(r[1] for r in rs):.3f}", end=";"
            )
        print(" at 16k)")
        svc, bm = means["context service"][16_000], means["whole-file BM25"][16_000]
        print(
            f"target recall@16k >= 0.80: {svc:.3f} {'met' if svc >= 0.8 else 'NOT met'};"
            f" >= 1.5x BM25 ({bm:.3f}): {svc / bm if bm else float('inf'):.2f}x {'met' if bm == 0 or svc >= 1.5 * bm else 'NOT met'}"
        )
        assert cold is not None
        print(
            f"\nindexing cold: {cold[0]} files ({cold[2]} parsed) in {cold[1]:.0f} ms = {cold[2] / (cold[1] / 1000):.0f} files/s"
        )
        ten = [ms for n, ms, _p in index_times if 5 <= n <= 15]
        allinc = [ms for _n, ms, _p in index_times]
        if ten:
            print(
                f"incremental, commits changing 5-15 files: median {statistics.median(ten):.0f} ms, max {max(ten)} ms (n={len(ten)})"
                f" -> target <= 1 s {'met' if statistics.median(ten) <= 1000 else 'NOT met'}"
            )
        if allinc:
            print(
                f"incremental, every commit: median {statistics.median(allinc):.0f} ms, max {max(allinc)} ms (n={len(allinc)})"
            )

        # ---- select latency on a 5,000-file project ----
        nm = ROOT / "node_modules"
        picked: list[str] = []
        for dirpath, dirnames, filenames in os.walk(nm):
            dirnames.sort()
            for fn in sorted(filenames):
                if re.search(r"\.(js|ts|mjs|cjs)$", fn) and not fn.endswith(".min.js"):
                    p = os.path.relpath(os.path.join(dirpath, fn), nm)
                    if 0 < os.path.getsize(os.path.join(dirpath, fn)) <= 100_000:
                        picked.append(p)
            if len(picked) >= 5000:
                break
        picked = picked[:5000]
        src = FsFiles(nm, picked, 1)
        t0 = time.perf_counter()
        r = await engine.index("big", src)
        big_ms = (time.perf_counter() - t0) * 1000
        mb = sum((nm / p).stat().st_size for p in picked) / 1e6
        print(
            f"\n5,000-file project (node_modules JS/TS, {mb:.0f} MB): cold index {big_ms / 1000:.1f} s = {r.parsed / (big_ms / 1000):.0f} files/s, {mb / (big_ms / 1000):.2f} MB/s"
        )
        t0 = time.perf_counter()
        await engine.select("big", 1, "warm up", 16_000, [], [])
        print(
            f"first select (loads the version index into memory): {(time.perf_counter() - t0) * 1000:.0f} ms"
        )
        queries = [c.query for c in all_cases] or ["request timeout retry"]
        lat = []
        cpu = []  # this process's CPU time per select: what load on a shared box does not inflate
        load_before = os.getloadavg()
        for i in range(selects):
            t0, c0 = time.perf_counter(), time.process_time()
            await engine.select("big", 1, queries[i % len(queries)], 16_000, [], [])
            lat.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        lat.sort()
        cpu.sort()
        p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(
            f"select at 16k, {selects} queries: p50 {p50:.1f} ms, p99 {p99:.1f} ms -> target p50 <= 50 ms {'met' if p50 <= 50 else 'NOT met'}"
        )
        print(
            f"  its CPU time: p50 {cpu[len(cpu) // 2]:.1f} ms, p99 {cpu[min(len(cpu) - 1, int(len(cpu) * 0.99))]:.1f} ms;"
            f" load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
        )
        print(
            f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, {platform.platform()}"
        )
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
