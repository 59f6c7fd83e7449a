"""Filling a token budget from a ranked version. Pure: index, ranking and file texts in, frames out.

THE RULE, in order:
1. included paths (globs) first: each whole when it fits, else its best chunks;
2. the HEAD_FILES best-ranked files that take at most HEAD_SHARE of the budget, each whole (a
   commit's change is most often in its best-ranked files, and in a small file the changed lines
   need not be the ones that share words with the query);
3. file first: each of the next SHARE_FILES candidates in rank order gets a share of SHARE_FRACTION
   of what is left, the shares decaying with rank (SHARE_DECAY); a file that fits its share is shown
   whole, else its chunks that match the query best, then the chunks nearest to those, as far as the
   share goes; what a file leaves passes down. Letting all chunks of all files compete by density
   (below) alone gave the truth files ranked 10-29 a quarter of their changed lines;
4. then the other units of the TOP_FILES best-ranked files: a one-chunk file is one unit, any longer file
   offers its chunks (definitions with their line ranges) one by one, scored by the file's rank and
   the chunk's own BM25; units go in by score per token^DENSITY, so the budget holds the relevant
   definitions of many files rather than all of a few (a file all of whose chunks go in is shown
   whole; a unit next to a chosen one of its file joins that frame and is charged no header of its
   own). Offering whole files as single units made a larger budget show fewer relevant lines:
   at 32k a 1,400-token file became one unit whose density lost to everyone's chunks. A chunk next
   to a matching one of its file counts as NEIGHBOUR x its relevance, halving per chunk further (a
   change to a definition tends to touch the ones around it);
5. then a repository map (path: main symbols), best files first, in whatever space is left.
Excluded paths are never shown, not even in the map. Every frame's `tokens` counts its text plus a
header allowance (path and line range, as the prompt prints them), with the real tokenizer, and the
frames' sum never exceeds the budget: the plan is checked after rendering and trimmed if needed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import Any

from .parsing import Chunk
from .ranking import VersionIndex, query_terms

TOP_FILES = 30
# A chunk's score: its file's score x (CHUNK_FLOOR + (1 - CHUNK_FLOOR) x its relevance), the
# relevance mixing its BM25 against the file's best chunk (LOCAL_WEIGHT) and the best chunk of all
# candidates; units are packed by score / tokens^DENSITY, so a short relevant definition beats a long
# window of the same score.
CHUNK_FLOOR = 0.25
LOCAL_WEIGHT = 0.5
DENSITY = 0.3
MAP_MIN_TOKENS = 24
HEAD_FILES = 3
HEAD_SHARE = 0.2
# A candidate's weight in packing: (its score / the best file's) ** FILE_SHARPNESS. Below 1 the
# budget reaches further down the ranking (measured: 0.5 beats 1, 2 and 4).
FILE_SHARPNESS = 0.5
# File-first packing: the k-th candidate's share of what is left is SHARE_DECAY**k over the sum of
# the remaining candidates' weights.
SHARE_DECAY = 0.8
SHARE_FILES = 15
SHARE_FRACTION = 0.6
# A chunk next to a matching one of its file counts as NEIGHBOUR x that one's relevance (halving
# with each chunk further away).
NEIGHBOUR = 0.5


@dataclass
class Unit:
    file: int
    start: int  # 1-based lines, inclusive
    end: int
    tokens: int
    score: float
    included: bool = False


_GLOB_CHARS = re.compile(r"[*?[]")


def _segment_source(seg: str) -> str:
    out = ""
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = seg.find("]", i + 2)
            if end < 0:
                raise ValueError("unclosed character class")
            cls = seg[i + 1 : end]
            negate = cls.startswith(("!", "^"))
            if negate:
                cls = cls[1:]
            cls = re.sub(r"[\\\]^]", lambda m: "\\" + m.group(0), cls)
            out += f"[^/{cls}]" if negate else f"[{cls}]"
            i = end
        else:
            out += re.escape(c)
        i += 1
    return out


@lru_cache(maxsize=4096)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """The same rules as the TS nodes' src/context/globs.ts: `*` / `?` / `[abc]` / `[!abc]` within one
    segment, `**` as a whole segment any number of segments (none included), and a pattern with no glob
    character also names a directory (`src`, `src/` match everything under src)."""
    body = re.sub(r"/+$", "", re.sub(r"^(\./)+", "", pattern))
    if not _GLOB_CHARS.search(body):
        return re.compile(f"^{re.escape(body)}(?:/.*)?$", re.S)
    segs = body.split("/")
    src = ""
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        if seg == "**":
            src += (".*" if i == 0 else "(?:/.*)?") if last else ("(?:.*/)?" if i == 0 else "(?:/.*)?/")
        else:
            src += ("/" if i > 0 and segs[i - 1] != "**" else "") + _segment_source(seg)
    return re.compile(f"^{src}$", re.S)


def glob_match(path: str, patterns: Sequence[str]) -> bool:
    """Whether any pattern matches the path (see `glob_regex`)."""
    return any(glob_regex(p).match(path) for p in patterns)


def _near(rel: list[float]) -> list[float]:
    """Each chunk's relevance, or NEIGHBOUR x a matching chunk's halved per chunk between, if more."""
    out = list(rel)
    carry = 0.0
    for k, r in enumerate(rel):
        carry = max(carry * 0.5, r * NEIGHBOUR)
        out[k] = max(out[k], carry)
    carry = 0.0
    for k in range(len(rel) - 1, -1, -1):
        carry = max(carry * 0.5, rel[k] * NEIGHBOUR)
        out[k] = max(out[k], carry)
    return out


def header_tokens(path: str, count: Callable[[str], int]) -> int:
    return count(path) + 8


def _memo(index: VersionIndex, count: Callable[[str], int]) -> Callable[[str], int]:
    """`count` for the short, query-independent strings (paths, map lines), remembered per version."""
    cache = index.token_cache

    def counted(text: str) -> int:
        n = cache.get(text)
        if n is None:
            n = cache[text] = count(text)
        return n

    return counted


def plan(
    index: VersionIndex,
    query: str,
    budget: int,
    include: Sequence[str],
    exclude: Sequence[str],
    count: Callable[[str], int],
) -> tuple[list[Unit], list[int]]:
    """The units to show and the files ranked for the map (both by file index)."""
    count = _memo(index, count)
    ranked = index.rank(query)
    qterms = query_terms(query)
    n = len(index.files)
    everything = not exclude
    allowed: range | list[int] = (
        range(n) if everything else [i for i in range(n) if not glob_match(index.files[i].path, exclude)]
    )
    allowed_set: range | set[int] = range(n) if everything else set(allowed)
    included = [i for i in allowed if glob_match(index.files[i].path, include)] if include else []
    included.sort(key=lambda i: (-ranked.file_scores[i], index.files[i].path))
    chosen: list[Unit] = []
    left = budget
    taken: set[tuple[int, int]] = set()

    headers: dict[int, int] = {}

    def header_of(i: int) -> int:
        h = headers.get(i)
        if h is None:
            h = headers[i] = header_tokens(index.files[i].path, count)
        return h

    ends: set[tuple[int, int]] = set()  # (file, last line) of the chosen units

    def offer(units: list[Unit]) -> None:
        nonlocal left
        for u in units:
            if left <= 1:
                break
            if (u.file, u.start) in taken:
                continue
            # a unit right after or before a chosen one of its file joins that frame: no header of
            # its own, one token for the line break (render counts exactly and trims if needed)
            joins = (u.file, u.start - 1) in ends or (u.file, u.end + 1) in taken
            cost = u.tokens + (1 if joins else header_of(u.file))
            if cost <= left:
                chosen.append(u)
                taken.add((u.file, u.start))
                ends.add((u.file, u.end))
                left -= cost

    def _take_chunks(i: int, chunks: Sequence[Chunk], rel: list[float], share: float) -> int:
        """A file's chunks within its share: those matching the query best first, then the others
        nearest to a chosen one (the lines around a match), in file order on ties. Returns the
        tokens spent (the caller takes them off `left`)."""
        matched = sorted((k for k, r in enumerate(rel) if r > 0), key=lambda k: -rel[k])
        n = len(chunks)
        dist = [n] * n  # chunks to the nearest match (the first chunk when none matches)
        for k in matched or [0]:
            dist[k] = 0
        for k in range(1, n):
            dist[k] = min(dist[k], dist[k - 1] + 1)
        for k in range(n - 2, -1, -1):
            dist[k] = min(dist[k], dist[k + 1] + 1)
        rest = [k for k in range(n) if rel[k] <= 0]
        rest.sort(key=lambda k: (dist[k], k))
        spent = 0
        score = ranked.file_scores[i]
        for k in matched + rest:
            c = chunks[k]
            if c.tokens <= 0 or (i, c.start) in taken:
                continue
            joins = (i, c.start - 1) in ends or (i, c.end + 1) in taken
            cost = c.tokens + (1 if joins else header_of(i))
            if spent + cost <= share and cost <= left - spent:
                chosen.append(Unit(i, c.start, c.end, c.tokens, score))
                taken.add((i, c.start))
                ends.add((i, c.end))
                spent += cost
        return spent

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
    candidates = list(islice((i for i in ranked.order if i in allowed_set and i not in inc_set), TOP_FILES))
    rank_of = {i: k for k, i in enumerate(candidates)}
    # the best-ranked files, when small against the budget, are shown whole
    for i in candidates[:HEAD_FILES]:
        f = index.files[i]
        if f.facts is not None and f.facts.chunks and f.tokens + header_of(i) <= HEAD_SHARE * budget:
            offer([Unit(i, 1, f.facts.lines, f.tokens, ranked.file_scores[i])])
    shown = {u.file for u in chosen}
    candidates = [i for i in candidates if i not in shown]
    rels = {i: index.chunk_relevance(i, qterms, ranked.named_defs) for i in candidates}
    # file first: each candidate in rank order gets a share of what is left, the shares decaying with
    # rank (SHARE_DECAY); a file that fits its share is shown whole, else its chunks that match the
    # query, then their neighbours, as far as the share goes; what a file leaves passes down
    firsts = candidates[:SHARE_FILES]
    weights = [SHARE_DECAY**k for k in range(len(firsts))]
    tail = sum(weights)
    kept = left * (1 - SHARE_FRACTION)
    for k, i in enumerate(firsts):
        share = (left - kept) * weights[k] / tail if tail > 0 else 0
        tail -= weights[k]
        f = index.files[i]
        if f.facts is None or not f.facts.chunks or left <= 1:
            continue
        whole_cost = f.tokens + header_of(i)
        if whole_cost <= max(share, 0):
            offer([Unit(i, 1, f.facts.lines, f.tokens, ranked.file_scores[i])])
            shown.add(i)
            continue
        spent = _take_chunks(i, f.facts.chunks, rels[i], share)
        left -= spent
    # what the shares left (a file smaller than its share): the other chunks of the candidates, by
    # score per token^DENSITY
    pool: list[Unit] = []
    if candidates and left > 1:
        top = ranked.file_scores[candidates[0]] or 1.0
        best = max((max(r, default=0.0) for r in rels.values()), default=0.0) or 1.0
        for i in candidates:
            f = index.files[i]
            if i in shown or f.facts is None or not f.facts.chunks:
                continue
            rel = rels[i]
            fnorm = (ranked.file_scores[i] / top) ** FILE_SHARPNESS
            local = max(rel, default=0.0) or 1.0
            if NEIGHBOUR > 0:
                rel = _near(rel)
            for c, r in zip(f.facts.chunks, rel, strict=True):
                if c.tokens <= 0:
                    continue
                mix = LOCAL_WEIGHT * r / local + (1 - LOCAL_WEIGHT) * r / best
                pool.append(Unit(i, c.start, c.end, c.tokens, fnorm * (CHUNK_FLOOR + (1 - CHUNK_FLOOR) * mix)))
    keys = [(-u.score / (u.tokens + header_of(u.file)) ** DENSITY, u.file, u.start) for u in pool]
    order = sorted(range(len(pool)), key=keys.__getitem__)
    offer([pool[k] for k in order])
    # the prompt shows the included files, then the others best-ranked first (a file's units in the
    # order they were chosen)
    n_included = sum(1 for u in chosen if u.included)
    chosen[n_included:] = sorted(chosen[n_included:], key=lambda u: rank_of.get(u.file, len(rank_of)))
    scores = ranked.file_scores
    if everything:
        map_order = ranked.order + [i for i in allowed if scores[i] <= 0]
    else:
        map_order = [i for i in ranked.order if i in allowed_set] + [i for i in allowed if scores[i] <= 0]
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
    short = _memo(index, count)
    units = list(units)
    counted: dict[tuple[int, int, int], int] = {}  # (file, start, end) -> tokens, across the retries
    split: dict[int, list[str]] = {}
    while True:
        frames = _content_frames(index, units, texts, count, short, counted, split)
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
        spent = short("Repository map (path: main symbols)\n")
        for i in map_order:
            f = index.files[i]
            if f.path in shown_whole:
                continue
            symbols: list[str] = []
            if f.facts is not None:
                for d in f.facts.definitions:
                    if d.kind in ("property", "variable", "field", "test") or d.name in symbols:
                        continue
                    symbols.append(d.name)
                    if len(symbols) == 8:
                        break
            line = f.path + (": " + ", ".join(symbols) if symbols else "")
            cost = short(line + "\n")
            if spent + cost > left:
                if spent + short(f.path + "\n") > left:
                    break
                line, cost = f.path, short(f.path + "\n")
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


def _blank(line: str) -> bool:
    return not line.strip()


def joined_tokens(
    chunks: Sequence[Chunk], first: dict[int, int], lines: list[str], start: int, end: int, count: Callable[[str], int]
) -> int | None:
    """The exact token count of lines start..end joined by newlines when they are whole adjacent chunks
    (their counts known from indexing), without encoding the whole range; None when they are not.

    WHY exact: cl100k's pre-tokenizer never lets a piece run from a newline on into a line that has
    a non-blank character (a piece holding a newline holds only whitespace after it, and ends at the
    last newline of its whitespace run), and BPE never merges across pieces. So a text splits, at
    the start of any non-blank line, into two parts whose counts add up. For chunks A and B, with
    T = A from its last non-blank line and H = B's leading blank lines (through their newline):
    count(A + newline + B) = count(A) - count(T) + count(T + newline + H) - count(H) + count(B).
    Only the few lines around each join are encoded."""
    k = first.get(start)
    if k is None:
        return None
    total = 0
    a0 = start
    while True:
        c = chunks[k]
        if c.end > end:
            return None
        if c.start == start:
            total = c.tokens
        else:
            t = c.start - 1  # the join: lines a0..t, then c.start..
            tail_from = t
            while tail_from > a0 and _blank(lines[tail_from - 1]):
                tail_from -= 1
            tail = "\n".join(lines[tail_from - 1 : t])
            m = c.start
            while m <= c.end and _blank(lines[m - 1]):
                m += 1
            if m > c.end:
                head = "\n".join(lines[c.start - 1 : c.end])
            elif m > c.start:
                head = "\n".join(lines[c.start - 1 : m - 1]) + "\n"
            else:
                head = ""
            total += c.tokens - count(tail) + count(tail + "\n" + head) - count(head)
        if c.end == end:
            return total
        k += 1
        if k >= len(chunks) or chunks[k].start != c.end + 1:
            return None


def _content_frames(
    index: VersionIndex,
    units: list[Unit],
    texts: dict[str, str],
    count: Callable[[str], int],
    short: Callable[[str], int],
    counted: dict[tuple[int, int, int], int],
    split: dict[int, list[str]],
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
        lines = split.get(i)
        if lines is None:
            lines = split[i] = text.split("\n")
        ranges: list[list[int]] = []
        for u in sorted(by_file[i], key=lambda u: u.start):
            if ranges and u.start <= ranges[-1][1] + 1:
                ranges[-1][1] = max(ranges[-1][1], u.end)
            else:
                ranges.append([u.start, u.end])
        whole = len(ranges) == 1 and ranges[0][0] == 1 and ranges[0][1] >= f.facts.lines
        # a range that is one chunk has its exact count from indexing (same text); a range of several
        # adjacent chunks is their counts plus what each join changes (see `joined_tokens`)
        chunks = f.facts.chunks
        first = {c.start: k for k, c in enumerate(chunks)}
        for s, e in ranges:
            body = "\n".join(lines[s - 1 : e])
            n = counted.get((i, s, e))
            if n is None:
                n = counted[(i, s, e)] = joined_tokens(chunks, first, lines, s, e, count) or count(body)
            frames.append(
                {
                    "kind": "file" if whole else "definitions",
                    "path": f.path,
                    "lines": [s, e],
                    "tokens": n + header_tokens(f.path, short),
                    "text": body,
                }
            )
    return frames
