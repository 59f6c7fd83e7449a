"""bench/context/sets.py: changed-line recall of the context service on several commit sets, in-process.

The same replay as run.py (the parent tree as the project, the message as the query, the parent's
removed or changed lines as the truth), without PostgreSQL: each set's parent trees are parsed with
`parse_file` (once per blob), indexed with `VersionIndex` (a path's version is where it last changed in
the set's replay, as `Engine.index` records it), and selected with `plan` + `render`, the code
`Engine.select` runs. For the set run.py replays, the figures equal its "context service" row. A change
to ranking or packing is checked here on disjoint sets of the history before the full bench.

Run: PYTHONPATH=context/src .tools/venv/bin/python bench/context/sets.py END:N [END:N ...]
     each set is the N commits up to END (a commit) that run.py would take, e.g.
     `6f84423:50 aed65d97:50`. Env: BENCH_REPO (default: this repository).
Prints 8k / 16k / 32k per set and over all of them, and the median plan + render CPU time.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from forgefluid_context.parsing import FileFacts, language_of, parse_file
from forgefluid_context.ranking import IndexedFile, VersionIndex
from forgefluid_context.selection import plan, render
from forgefluid_context.tokens import count_tokens
from run import BUDGETS, Case, GitTree, cases, cat_blobs, recall

MAX_FILE_BYTES = 512 * 1024  # run.py's Engine setting

_facts: dict[tuple[str, str | None], FileFacts] = {}


def replay(set_cases: list[Case]) -> tuple[dict[int, float], float]:
    """Mean changed-line recall per budget over the set, and the median plan + render CPU ms."""
    per_budget: dict[int, list[float]] = {b: [] for b in BUDGETS}
    cpu: list[float] = []
    last: dict[str, tuple[str, int]] = {}  # path -> (blob, version it last changed in)
    for version, case in enumerate(set_cases, start=1):
        _v, files = asyncio.run(GitTree(case.parent, version).files())
        contents = cat_blobs([f.sha256 for f in files])
        texts: dict[str, str] = {}
        indexed: list[IndexedFile] = []
        for f in files:
            data = contents[f.sha256]
            facts = None
            if f.size <= MAX_FILE_BYTES and b"\0" not in data[:8192]:
                key = (f.sha256, language_of(f.path))
                facts = _facts.get(key)
                if facts is None:
                    facts = _facts[key] = parse_file(f.path, data, count_tokens)
                texts[f.sha256] = data.decode("utf-8", "replace")
            before = last.get(f.path)
            changed = before[1] if before and before[0] == f.sha256 else version
            last[f.path] = (f.sha256, changed)
            indexed.append(IndexedFile(f.path, f.sha256, f.size, facts, changed))
        index = VersionIndex(indexed)
        for budget in BUDGETS:
            t0 = time.process_time()
            units, map_order = plan(index, case.query, budget, [], [], count_tokens)
            frames, used = render(index, units, map_order, budget, texts, count_tokens)
            cpu.append((time.process_time() - t0) * 1000)
            assert used <= budget
            shown: dict[str, set[int]] = {}
            for frame in frames:
                if frame["kind"] != "map":
                    s, e = frame["lines"]
                    shown.setdefault(frame["path"], set()).update(range(s, e + 1))
            hit, lines, _fh, _fn = recall(case, shown)
            per_budget[budget].append(hit / lines)
    return {b: statistics.mean(v) for b, v in per_budget.items()}, statistics.median(
        cpu
    )


def main(args: list[str]) -> None:
    if not args or any(":" not in a for a in args):
        sys.exit(__doc__)
    totals = dict.fromkeys(BUDGETS, 0.0)
    n_all = 0
    for arg in args:
        end, n = arg.rsplit(":", 1)
        set_cases = cases(int(n), end)
        means, cpu_ms = replay(set_cases)
        first, last_c = set_cases[0].commit[:8], set_cases[-1].commit[:8]
        print(
            f"{arg} ({len(set_cases)} commits, {first}..{last_c}): "
            + " / ".join(f"{means[b]:.3f}" for b in BUDGETS)
            + f"  (8k / 16k / 32k; plan + render CPU median {cpu_ms:.1f} ms)",
            flush=True,
        )
        for b in BUDGETS:
            totals[b] += means[b] * len(set_cases)
        n_all += len(set_cases)
    print(
        f"all {n_all} commits: "
        + " / ".join(f"{totals[b] / n_all:.3f}" for b in BUDGETS)
    )


if __name__ == "__main__":
    main(sys.argv[1:])
