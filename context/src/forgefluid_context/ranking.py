"""Ranking files and chunks of one project version for a query. Pure: facts in, scores out.

THE RULE. A file's score adds up
- lexical relevance: BM25 of the query's terms over the file's split identifiers and path (normalised
  to the best file),
- what the prompt names: files defining an identifier the query spells out (`readContext`,
  `BatchingNatsTransporter`), files whose path the query names (the whole path or a tail of it on
  segment boundaries, with or without the extension: `src/ai/report.ts`, `ai/report`, `report.ts`; or
  a directory: `src/ai/`), and, weaker, files whose stem or directory is a plain word of the query
  (`orgs: ...` names src/orgs/*, orgs.service.ts, docs/orgs.md), each divided among the files that
  share the name,
- the graph: personalised PageRank over the reference/import graph plus edges between files sharing
  a stem (a subject, its test, its doc), seeded with the above (as Aider's repository map does), so
  the callers, callees and tests of what matched come next,
- recency: files changed in later versions of the project rank a little higher,
- a commit-style subject (`payments: ...`, `net/http: ...`, `fix(parser): ...`): the files of the
  component it names (a directory of that name or path, or that stem) have their score multiplied by
  1 + W_SCOPE, and a conventional `test`/`docs` type multiplies test or doc files by 1 + W_KIND.
A chunk's score is its file's score scaled by the chunk's own BM25 against the query (a chunk that
defines a named identifier counts as fully relevant).

WHY. Path order fills a budget with licences and CI files; whole-file BM25 finds the right files but
spends the budget on the wrong half of a long one. Chunks let a 16k budget hold the relevant parts of
many long files.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from operator import itemgetter

from .parsing import STOPWORDS, FileFacts, path_terms, split_identifier, terms_of

K1 = 1.2
B = 0.75
W_LEXICAL = 1.0
W_NAMED_DEF = 1.0
W_NAMED_PATH = 1.2
W_NAMED_SEGMENT = 0.5  # a plain word that is a file's stem or directory, relative to a spelled-out path
W_GRAPH = 0.5
W_RECENCY = 0.15
# A commit-style subject names its component: `payments: ...`, `net/http: ...`, `fix(parser): ...`.
# Files under that directory or with that stem are the change's likely home: their score is
# multiplied by 1 + W_SCOPE. A conventional type (`test(...)`, `docs: ...`) favours files of its kind
# by 1 + W_KIND.
W_SCOPE = 2.0
W_KIND = 0.5
PPR_ALPHA = 0.15
PPR_EPSILON = 2e-4
MAX_DEFINERS = 6
W_SAME_STEM = 1.0  # edge weight between files sharing a stem, against 2 for a resolved import
# A chunk's score is its file's times (CHUNK_FLOOR + (1 - CHUNK_FLOOR) x its relevance within the file).
CHUNK_FLOOR = 0.25  # an identifier defined in more files than this is too common to make an edge


# `component: subject`, `a/b: subject`, `type(scope)!: subject` at the start of the query
_SUBJECT = re.compile(r"^\s*([A-Za-z0-9_][\w./-]{0,60})(?:\(([\w./, -]{1,80})\))?!?:\s")
COMMIT_TYPES = frozenset(
    {"fix", "feat", "feature", "chore", "docs", "doc", "test", "tests", "refactor", "perf", "build", "ci", "style"}
)
_TEST_PATH = re.compile(r"(^|/)(tests?|spec|__tests__|testing)/|[._-](test|spec)s?\.[^/]+$|(^|/)test_[^/]+$")
_DOC_PATH = re.compile(r"(^|/)docs?/|\.(md|rst|txt|adoc)$", re.I)


def subject_of(query: str) -> tuple[str | None, list[str]]:
    """The conventional type (`test`, `docs`, ...) and the component scopes a commit-style query
    starts with: `test(tasks): x` -> ("test", ["tasks"]); `bench/compat: x` -> (None, ["bench/compat"]);
    `fix: x` -> ("fix", []); a query not shaped so -> (None, [])."""
    m = _SUBJECT.match(query)
    if m is None:
        return None, []
    head, inner = m.group(1).lower().strip("./"), m.group(2)
    kind = head if head in COMMIT_TYPES else None
    scopes = [head] if kind is None and head else []
    if inner:
        scopes.extend(s.strip().lower().strip("./") for s in inner.split(","))
    return kind, [s for s in scopes if len(s) > 1 and s not in COMMIT_TYPES]


@dataclass
class IndexedFile:
    path: str
    sha256: str
    size: int
    facts: FileFacts | None  # None: binary, too large, or not yet parsed
    changed_at: int = 0  # the project version in which this path last changed
    tokens: int = 0
    terms: dict[str, int] = field(default_factory=dict)
    length: int = 0


@dataclass
class Ranked:
    file_scores: list[float]  # by file index
    order: list[int]  # file indexes, best first (score > 0)
    named_defs: set[str]


class VersionIndex:
    """The lexical postings, definitions and graph of one version, built once and queried many times."""

    def __init__(self, files: list[IndexedFile]) -> None:
        self.files = files
        self.by_path = {f.path: i for i, f in enumerate(files)}
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.definers: dict[str, list[int]] = defaultdict(list)
        total = 0
        for i, f in enumerate(files):
            terms: dict[str, int] = dict(path_terms(f.path))
            for t in list(terms):
                terms[t] *= 3
            if f.facts is not None:
                for c in f.facts.chunks:
                    for t, n in c.terms.items():
                        terms[t] = terms.get(t, 0) + n
                f.tokens = sum(c.tokens for c in f.facts.chunks)
                seen: set[str] = set()
                for d in f.facts.definitions:
                    if d.name not in seen:
                        seen.add(d.name)
                        self.definers[d.name].append(i)
            f.terms = terms
            f.length = sum(terms.values())
            total += f.length
            for t, n in terms.items():
                self.postings[t].append((i, n))
        self.avg_length = total / len(files) if files else 1.0
        # BM25's per-document factor tf x (K1 + 1) / (tf + K1 x length norm) does not depend on the
        # query: computed once, a query's score is then idf x factor summed over its terms' postings
        # so is the idf: each posting holds idf x that factor
        n = len(files)
        self.weighted: dict[str, list[tuple[int, float]]] = {}
        for t, posting in self.postings.items():
            idf = math.log(1 + (n - len(posting) + 0.5) / (len(posting) + 0.5))
            self.weighted[t] = [
                (i, idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * files[i].length / self.avg_length)))
                for i, tf in posting
            ]
        self.lower_paths = [f.path.lower() for f in files]
        self.stem_of = [p.rsplit("/", 1)[-1].split(".", 1)[0] for p in self.lower_paths]
        # a plain word of the query that is a file's stem or one of its directories names that file
        # every tail of a path on segment boundaries, with and without its extension, and every
        # directory: what a path written in the query can name
        self.by_stem: dict[str, list[int]] = defaultdict(list)
        for i, stem in enumerate(self.stem_of):
            self.by_stem[stem].append(i)
        self.by_segment: dict[str, list[int]] = defaultdict(list)
        self.by_suffix: dict[str, list[int]] = defaultdict(list)
        self.by_dir: dict[str, list[int]] = defaultdict(list)
        for i, lp in enumerate(self.lower_paths):
            segs = lp.split("/")
            for seg in {*segs[:-1], self.stem_of[i]}:
                self.by_segment[seg].append(i)
            tails = {"/".join(segs[k:]) for k in range(len(segs))}
            stemmed_segs = [*segs[:-1], self.stem_of[i]]
            tails.update("/".join(stemmed_segs[k:]) for k in range(len(stemmed_segs)))
            for t in tails:
                self.by_suffix[t].append(i)
            for k in range(1, len(segs)):
                self.by_dir["/".join(segs[:k])].append(i)
        # paths in path order (the ranking's tie-break) and the files a conventional type favours
        self.path_order = sorted(range(len(files)), key=lambda i: files[i].path)
        self.test_files = [i for i, lp in enumerate(self.lower_paths) if _TEST_PATH.search(lp)]
        self.doc_files = [i for i, lp in enumerate(self.lower_paths) if _DOC_PATH.search(lp)]
        self.chunk_lengths: dict[int, tuple[list[int], float]] = {}
        self._idfs: tuple[tuple[str, ...], dict[str, float]] = ((), {})
        self.graph = self._graph()
        self.out_weight = [sum(e.values()) for e in self.graph]
        # query-independent, so computed once: each node's edges as (target, share of its out-weight)
        # and the residual above which the push visits it
        self.edges: list[list[tuple[int, float]]] = [
            [(j, w / ow) for j, w in e.items()] if ow > 0 else []
            for e, ow in zip(self.graph, self.out_weight, strict=True)
        ]
        self.push_limit = [PPR_EPSILON * max(1, len(e)) for e in self.graph]
        # token counts that do not depend on the query (frame headers, map lines), filled on first use
        self.token_cache: dict[str, int] = {}
        versions = [f.changed_at for f in files]
        self.min_version = min(versions) if versions else 0
        self.max_version = max(versions) if versions else 0

    def _graph(self) -> list[dict[int, float]]:
        """Edges referencer -> definer (weight: sqrt of the uses, shared among the definers), resolved
        imports (weight 2), and each edge's reverse at half weight (callers matter for a change too)."""
        out: list[dict[int, float]] = [defaultdict(float) for _ in self.files]
        stems: dict[str, list[int]] = defaultdict(list)
        for i, f in enumerate(self.files):
            base = f.path.rsplit("/", 1)[-1]
            stems[base.split(".", 1)[0].lower()].append(i)
        # a test, doc or sibling that shares a file's stem (orgs.ts, orgs.test.ts, orgs.md) follows it
        for group in stems.values():
            if 1 < len(group) <= MAX_DEFINERS:
                for i in group:
                    for j in group:
                        if i != j:
                            out[i][j] += W_SAME_STEM / (len(group) - 1)
        for i, f in enumerate(self.files):
            if f.facts is None:
                continue
            for name, uses in f.facts.references.items():
                definers = self.definers.get(name)
                if not definers or len(definers) > MAX_DEFINERS:
                    continue
                w = math.sqrt(uses) / len(definers)
                for j in definers:
                    if j != i:
                        out[i][j] += w
                        out[j][i] += w / 2
            for imp in f.facts.imports:
                last = re.split(r"[/.:\\]", imp.rstrip("/"))[-1].lower() if imp else ""
                targets = [j for j in stems.get(last, []) if j != i]
                if 0 < len(targets) <= MAX_DEFINERS:
                    for j in targets:
                        out[i][j] += 2 / len(targets)
                        out[j][i] += 1 / len(targets)
        return out

    # ---- querying ----

    def bm25(self, qterms: dict[str, int]) -> dict[int, float]:
        scores = [0.0] * len(self.files)
        weighted = self.weighted
        for t in qterms:
            posting = weighted.get(t)
            if posting:
                for i, w in posting:
                    scores[i] += w
        return {i: v for i, v in enumerate(scores) if v}

    def named(self, query: str) -> tuple[dict[int, float], dict[int, float], dict[int, float], set[str]]:
        """Files defining identifiers the query spells out, files whose path it names, and files whose
        stem or directory is a plain word of the query."""
        defs: dict[int, float] = defaultdict(float)
        named_defs: set[str] = set()
        for w in set(re.findall(r"[A-Za-z_$][A-Za-z0-9_$]{2,}", query)):
            definers = self.definers.get(w)
            if not definers or len(definers) > MAX_DEFINERS * 2:
                continue
            # plain English words that happen to name a definition ("select", "index") count less
            weight = 1.0 if (re.search(r"[a-z][A-Z]|_|[A-Z]{2}", w) or w[0].isupper()) else 0.35
            named_defs.add(w)
            for i in definers:
                defs[i] += weight / math.sqrt(len(definers))
        paths: dict[int, float] = defaultdict(float)
        segments: dict[int, float] = defaultdict(float)
        for tok in set(re.findall(r"[A-Za-z0-9_][A-Za-z0-9_./-]*[A-Za-z0-9_]", query)):
            low = tok.lower()
            if "/" not in tok and "." not in tok and "-" not in tok:
                seg_hits = self.by_segment.get(low) if len(low) > 2 and low not in STOPWORDS else None
                if seg_hits and len(seg_hits) <= 100:
                    for i in seg_hits:
                        segments[i] += 1 / math.sqrt(len(seg_hits))
                continue
            # the path itself, a tail of it (`report.ts`, `ai/report.ts`), either without its
            # extension (`bench/README`), or a directory (`src/ai/`)
            low = low.strip("./")
            hits = set(self.by_suffix.get(low, ()))
            if "/" in low:
                hits.update(self.by_dir.get(low.rstrip("/"), ()))
            if hits:
                ordered = sorted(hits)
                for i in ordered[:50]:
                    paths[i] += 1 / math.sqrt(len(ordered))
        # words written apart that a file's stem joins: "api-key cache" names api-key-cache.ts,
        # "account deletion" account-deletion.ts, "stream slots" stream_slots.py
        words = [w.lower() for w in re.findall(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*", query)]
        for n in (2, 3):
            for k in range(len(words) - n + 1):
                run = words[k : k + n]
                if all(w in STOPWORDS for w in run):
                    continue
                for joined in {"-".join(run), "_".join(run), "".join(run)}:
                    stem_hits = self.by_stem.get(joined)
                    if stem_hits and len(stem_hits) <= MAX_DEFINERS * 2:
                        for i in stem_hits:
                            paths[i] += 1 / math.sqrt(len(stem_hits))
        return defs, paths, segments, named_defs

    def in_scope(self, scope: str) -> set[int]:
        """Files a component name covers: a directory of that name (or path) anywhere, or that stem."""
        hits = set(self.by_segment.get(scope, ())) if "/" not in scope else set()
        hits.update(self.by_dir.get(scope, ()))
        hits.update(self.by_suffix.get(scope, ()))
        if "/" in scope:
            # `bench/compat` also names src/bench/compat/... : a directory path as a tail of a directory
            tail = "/" + scope + "/"
            hits.update(
                i for i in self.by_segment.get(scope.rsplit("/", 1)[-1], ()) if tail in "/" + self.lower_paths[i]
            )
        return hits

    def subject_boost(self, query: str) -> dict[int, float]:
        """Multipliers above 1 for the files a commit-style subject points at (see W_SCOPE)."""
        kind, scopes = subject_of(query)
        boost: dict[int, float] = {}
        scoped: set[int] = set()
        for sc in scopes:
            scoped |= self.in_scope(sc)
        if len(scoped) > len(self.files) // 2:
            scoped = set()  # names half the project: says nothing
        for i in scoped:
            boost[i] = 1 + W_SCOPE
        kinds = self.test_files if kind in ("test", "tests") else self.doc_files if kind in ("docs", "doc") else []
        for i in kinds:
            boost[i] = boost.get(i, 1.0) * (1 + W_KIND)
        return boost

    def personalised_pagerank(self, seeds: dict[int, float]) -> dict[int, float]:
        """Andersen-Chung-Lang push: approximate PPR touching only the seeds' neighbourhood. A node is
        pushed while its residual exceeds epsilon x its degree, which bounds the work by
        1 / (epsilon x alpha) edge visits whatever the graph's size."""
        total = sum(seeds.values())
        if total <= 0:
            return {}
        p: dict[int, float] = defaultdict(float)
        r: dict[int, float] = defaultdict(float)
        for i, v in seeds.items():
            r[i] = v / total
        edges_of = self.edges
        limit = self.push_limit
        keep = 1 - PPR_ALPHA
        queue = [i for i in r if r[i] > limit[i]]
        while queue:
            i = queue.pop()
            ri = r[i]
            if ri <= limit[i]:
                continue
            p[i] += PPR_ALPHA * ri
            r[i] = 0.0
            edges = edges_of[i]
            if not edges:
                p[i] += keep * ri
                continue
            spread = keep * ri
            for j, share in edges:
                before = r[j]
                after = before + spread * share
                r[j] = after
                if before <= limit[j] < after:
                    queue.append(j)
        return p

    def rank(self, query: str) -> Ranked:
        qterms = dict(terms_of(query))
        lex = self.bm25(qterms)
        defs, paths, segments, named_defs = self.named(query)
        top_lex = max(lex.values(), default=0.0) or 1.0
        top_def = max(defs.values(), default=0.0) or 1.0
        top_path = max(paths.values(), default=0.0) or 1.0
        top_segment = max(segments.values(), default=0.0) or 1.0
        base: dict[int, float] = defaultdict(float)
        for i, v in lex.items():
            base[i] += W_LEXICAL * v / top_lex
        for i, v in defs.items():
            base[i] += W_NAMED_DEF * v / top_def
        for i, v in paths.items():
            base[i] += W_NAMED_PATH * v / top_path
        for i, v in segments.items():
            base[i] += W_NAMED_SEGMENT * v / top_segment
        boost = self.subject_boost(query)
        for i, m in boost.items():
            if i in base:
                base[i] *= m
        seeds = dict(heapq.nlargest(30, base.items(), key=itemgetter(1)))
        ppr = self.personalised_pagerank(seeds)
        top_ppr = max(ppr.values(), default=0.0) or 1.0
        span = self.max_version - self.min_version
        scores = [0.0] * len(self.files)
        for i, v in base.items():
            scores[i] = v
        graph = W_GRAPH / top_ppr
        for i, v in ppr.items():
            scores[i] += graph * v * boost.get(i, 1.0)
        if span > 0:
            recency = W_RECENCY / span
            files = self.files
            low = self.min_version
            for i in {*base, *ppr}:  # every other file scores 0
                if scores[i] > 0:
                    scores[i] += recency * (files[i].changed_at - low)
        # best first, ties in path order: a stable sort by score of the files in path order
        order = [i for i in self.path_order if scores[i] > 0]
        order.sort(key=scores.__getitem__, reverse=True)
        return Ranked(scores, order, named_defs)

    def chunk_relevance(self, file_index: int, query_terms: dict[str, int], named: set[str]) -> list[float]:
        """Each chunk's BM25 against the query (chunks of the file as the documents, the version's
        document frequencies); a chunk defining a named identifier gets the file's best plus one."""
        f = self.files[file_index]
        if f.facts is None or not f.facts.chunks:
            return []
        chunks = f.facts.chunks
        cached = self.chunk_lengths.get(file_index)
        if cached is None:
            lengths = [sum(c.terms.values()) for c in chunks]
            cached = self.chunk_lengths[file_index] = (lengths, sum(lengths) / len(chunks) or 1.0)
        lengths, avg = cached
        idfs = self.query_idfs(query_terms)
        k1b = K1 * B / avg
        k1 = K1 * (1 - B)
        k2 = K1 + 1
        raw: list[float] = []
        wanted = idfs.keys()
        for c, dl in zip(chunks, lengths, strict=True):
            terms = c.terms
            common = wanted & terms.keys()
            if common:
                norm = k1 + k1b * dl
                raw.append(sum(idfs[t] * terms[t] * k2 / (terms[t] + norm) for t in common))
            else:
                raw.append(0.0)
        if named:
            top = max(raw, default=0.0) + 1.0
            raw = [top if c.name in named else s for c, s in zip(chunks, raw, strict=True)]
        return raw

    def query_idfs(self, query_terms: dict[str, int]) -> dict[str, float]:
        """idf of each query term the version has (the query's last set is remembered: a selection
        asks for it once per candidate file)."""
        key = tuple(query_terms)
        if self._idfs[0] != key:
            n = len(self.files)
            idfs = {}
            for t in query_terms:
                df = len(self.postings.get(t, ()))
                if df:
                    idfs[t] = math.log(1 + (n - df + 0.5) / (df + 0.5))
            self._idfs = (key, idfs)
        return self._idfs[1]

    def chunk_scores(
        self, file_index: int, query_terms: dict[str, int], file_score: float, named: set[str]
    ) -> list[float]:
        """Each chunk of a file: the file's score times (0.25 + 0.75 x the chunk's share of the best
        chunk's BM25 in that file); a chunk defining a named identifier counts as the best."""
        f = self.files[file_index]
        if f.facts is None or not f.facts.chunks:
            return []
        n = len(self.files)
        raw: list[float] = []
        chunks = f.facts.chunks
        avg = sum(sum(c.terms.values()) for c in chunks) / len(chunks) or 1.0
        for c in chunks:
            dl = sum(c.terms.values())
            s = 0.0
            for t in query_terms:
                tf = c.terms.get(t, 0)
                if tf:
                    df = len(self.postings.get(t, ())) or 1
                    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                    s += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avg))
            raw.append(s)
        best = max(raw) or 1.0
        out = []
        for c, s in zip(chunks, raw, strict=True):
            rel = 1.0 if c.name in named else s / best
            out.append(file_score * (CHUNK_FLOOR + (1 - CHUNK_FLOOR) * rel))
        return out


def query_terms(query: str) -> dict[str, int]:
    return dict(terms_of(query))


__all__ = ["IndexedFile", "Ranked", "VersionIndex", "query_terms", "split_identifier"]
