"""Filling a token budget from a ranked version. Pure: index, ranking and file texts in, frames out.

THE RULE, in order:
1. included paths (globs) first: each whole when it fits, else its best chunks;
2. then units by score: a well-ranked file that takes at most a quarter of the budget is one unit
   (whole), a longer file offers its chunks (definitions with their line ranges) one by one;
3. then a repository map (path: main symbols), best files first, in whatever space is left.
Excluded paths are never shown, not even in the map. Every frame's `tokens` counts its text plus a
header allowance (path and line range, as the prompt prints them), with the real tokenizer, and the
frames' sum never exceeds the budget: the plan is checked after rendering and trimmed if needed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .ranking import VersionIndex, query_terms

WHOLE_FILE_SHARE = 0.25
TOP_FILES = 60
MAP_MIN_TOKENS = 24


@dataclass
class Unit:
    file: int
    start: int  # 1-based lines, inclusive
    end: int
    tokens: int
    score: float
    included: bool = False


def glob_match(path: str, patterns: Sequence[str]) -> bool:
    """`src/**/*.ts`, `*.md`, `docs/` (a directory), or an exact path."""
    for p in patterns:
        if p.endswith("/") and path.startswith(p):
            return True
        if fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, p.replace("**/", "")):
            return True
        if "/" not in p and fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], p):
            return True
    return False


def header_tokens(path: str, count: Callable[[str], int]) -> int:
    return count(path) + 8


def plan(
    index: VersionIndex,
    query: str,
    budget: int,
    include: Sequence[str],
    exclude: Sequence[str],
    count: Callable[[str], int],
) -> tuple[list[Unit], list[int]]:
    """The units to show and the files ranked for the map (both by file index)."""
    ranked = index.rank(query)
    qterms = query_terms(query)
    allowed = [i for i in range(len(index.files)) if not (exclude and glob_match(index.files[i].path, exclude))]
    allowed_set = set(allowed)
    included = [i for i in allowed if include and glob_match(index.files[i].path, include)]
    included.sort(key=lambda i: (-ranked.file_scores[i], index.files[i].path))
    chosen: list[Unit] = []
    left = budget
    taken: set[tuple[int, int]] = set()

    def offer(units: list[Unit]) -> None:
        nonlocal left
        for u in units:
            if (u.file, u.start) in taken:
                continue
            cost = u.tokens + header_tokens(index.files[u.file].path, count)
            if cost <= left:
                chosen.append(u)
                taken.add((u.file, u.start))
                left -= cost

    def units_of(i: int, score: float, whole_ok: bool, inc: bool) -> list[Unit]:
        f = index.files[i]
        if f.facts is None or not f.facts.chunks:
            return []
        if whole_ok:
            return [Unit(i, 1, f.facts.lines, f.tokens, score, inc)]
        scores = index.chunk_scores(i, qterms, max(score, 1e-6), ranked.named_defs)
        return [
            Unit(i, c.start, c.end, c.tokens, s, inc)
            for c, s in zip(f.facts.chunks, scores, strict=True)
            if c.tokens > 0
        ]

    for i in included:
        f = index.files[i]
        whole = f.tokens + header_tokens(f.path, count) <= left
        units = units_of(i, ranked.file_scores[i] + 1.0, whole, True)
        offer(sorted(units, key=lambda u: -u.score))
    inc_set = set(included)
    pool: list[Unit] = []
    candidates = [i for i in ranked.order if i in allowed_set and i not in inc_set][:TOP_FILES]
    for i in candidates:
        f = index.files[i]
        whole = f.tokens <= WHOLE_FILE_SHARE * budget
        pool.extend(units_of(i, ranked.file_scores[i], whole, False))
    pool.sort(key=lambda u: (-u.score, u.file, u.start))
    offer(pool)
    map_order = [i for i in ranked.order if i in allowed_set] + [i for i in allowed if ranked.file_scores[i] <= 0]
    return chosen, map_order


def render(
    index: VersionIndex,
    units: list[Unit],
    map_order: list[int],
    budget: int,
    texts: dict[str, str],
    count: Callable[[str], int],
) -> tuple[list[dict[str, Any]], int]:
    """Frames from the chosen units (adjacent ranges of a file merged), then the map; exact tokens."""
    units = list(units)
    while True:
        frames = _content_frames(index, units, texts, count)
        used = sum(f["tokens"] for f in frames)
        if used <= budget or not units:
            break
        # joining ranges can cost a token or two more than the parts: drop the weakest unit and retry
        weakest = min(range(len(units)), key=lambda k: (units[k].included, units[k].score))
        units.pop(weakest)
    left = budget - used
    shown_whole = {f["path"] for f in frames if f["kind"] == "file"}
    if left >= MAP_MIN_TOKENS:
        lines: list[str] = []
        spent = count("Repository map (path: main symbols)\n")
        for i in map_order:
            f = index.files[i]
            if f.path in shown_whole:
                continue
            symbols: list[str] = []
            if f.facts is not None:
                for d in f.facts.definitions:
                    if d.kind in ("property", "variable", "field") or d.name in symbols:
                        continue
                    symbols.append(d.name)
                    if len(symbols) == 8:
                        break
            line = f.path + (": " + ", ".join(symbols) if symbols else "")
            cost = count(line + "\n")
            if spent + cost > left:
                if spent + count(f.path + "\n") > left:
                    break
                line, cost = f.path, count(f.path + "\n")
            lines.append(line)
            spent += cost
        if lines:
            text = "Repository map (path: main symbols)\n" + "\n".join(lines) + "\n"
            tokens = count(text)
            while lines and tokens > left:
                lines.pop()
                text = "Repository map (path: main symbols)\n" + "\n".join(lines) + "\n"
                tokens = count(text)
            if lines:
                frames.append({"kind": "map", "tokens": tokens, "text": text})
                used += tokens
    return frames, used


def _content_frames(
    index: VersionIndex, units: list[Unit], texts: dict[str, str], count: Callable[[str], int]
) -> list[dict[str, Any]]:
    by_file: dict[int, list[Unit]] = {}
    order: list[int] = []
    for u in units:
        if u.file not in by_file:
            by_file[u.file] = []
            order.append(u.file)
        by_file[u.file].append(u)
    frames: list[dict[str, Any]] = []
    for i in order:
        f = index.files[i]
        text = texts.get(f.sha256)
        if text is None or f.facts is None:
            continue
        lines = text.split("\n")
        ranges: list[list[int]] = []
        for u in sorted(by_file[i], key=lambda u: u.start):
            if ranges and u.start <= ranges[-1][1] + 1:
                ranges[-1][1] = max(ranges[-1][1], u.end)
            else:
                ranges.append([u.start, u.end])
        whole = len(ranges) == 1 and ranges[0][0] == 1 and ranges[0][1] >= f.facts.lines
        for s, e in ranges:
            body = "\n".join(lines[s - 1 : e])
            frames.append(
                {
                    "kind": "file" if whole else "definitions",
                    "path": f.path,
                    "lines": [s, e],
                    "tokens": count(body) + header_tokens(f.path, count),
                    "text": body,
                }
            )
    return frames
