"""What the index keeps of one file: definitions, references, imports, and a partition of its lines
into chunks (definitions, and windows over the code between them) that selection can pick from.

In JavaScript and TypeScript, test-runner blocks (`describe("title", () => ...)`, `it`, `test`...)
are definitions too, named by their titles: a test file then chunks at its cases.

Pure: bytes in, a `FileFacts` out. Parsed with tree-sitter grammars from PyPI wheels; a file in a
language without a grammar (Markdown, YAML, JSON, shell...) still gets line-window chunks and a
lexical index, only no definitions or graph edges.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import tree_sitter as ts

# Window size for code outside definitions and for files without a grammar.
WINDOW_LINES = 40
# A definition longer than this is split into its child definitions (and windows between them).
MAX_CHUNK_LINES = 120
# The version of what `parse_file` extracts: facts stored by an older one are parsed again when a
# version holding their blob is indexed (2: test-runner blocks are definitions).
PARSER_VERSION = 2


@dataclass
class Definition:
    name: str
    kind: str
    start: int  # 1-based, inclusive
    end: int


@dataclass
class Chunk:
    start: int  # 1-based, inclusive
    end: int
    name: str  # the definition's name, "" for a window
    terms: dict[str, int] = field(default_factory=dict)
    tokens: int = 0


@dataclass
class FileFacts:
    language: str
    lines: int
    definitions: list[Definition]
    references: dict[str, int]  # identifier -> occurrences (definition names excluded)
    imports: list[str]
    chunks: list[Chunk]

    def to_json(self) -> dict[str, Any]:
        return {
            "v": PARSER_VERSION,
            "language": self.language,
            "lines": self.lines,
            "definitions": [[d.name, d.kind, d.start, d.end] for d in self.definitions],
            "references": self.references,
            "imports": self.imports,
            "chunks": [[c.start, c.end, c.name, c.terms, c.tokens] for c in self.chunks],
        }

    @staticmethod
    def from_json(j: dict[str, Any]) -> FileFacts:
        return FileFacts(
            language=j["language"],
            lines=j["lines"],
            definitions=[Definition(n, k, s, e) for n, k, s, e in j["definitions"]],
            references=j["references"],
            imports=j["imports"],
            chunks=[Chunk(s, e, n, t, k) for s, e, n, t, k in j["chunks"]],
        )


EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".rb": "ruby",
    ".php": "php",
}


def language_of(path: str) -> str | None:
    dot = path.rfind(".")
    return EXTENSIONS.get(path[dot:].lower()) if dot >= 0 else None


# language -> (grammar module, the function of it that returns the language)
_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "ruby": ("tree_sitter_ruby", "language"),
    "php": ("tree_sitter_php", "language_php"),
}


def _loader(language: str) -> Callable[[], Any]:
    module, fn = _GRAMMARS[language]
    loaded: Callable[[], Any] = getattr(importlib.import_module(module), fn)
    return loaded


@cache
def _parser(language: str) -> ts.Parser:
    return ts.Parser(ts.Language(_loader(language)()))


# Node types that define something, per language family, with the kind reported.
DEFINITIONS: dict[str, dict[str, str]] = {
    "python": {"function_definition": "function", "class_definition": "class"},
    "javascript": {
        "function_declaration": "function",
        "generator_function_declaration": "function",
        "class_declaration": "class",
        "method_definition": "method",
        "variable_declarator": "variable",
        "pair": "property",
    },
    "go": {
        "function_declaration": "function",
        "method_declaration": "method",
        "type_spec": "type",
    },
    "rust": {
        "function_item": "function",
        "struct_item": "struct",
        "enum_item": "enum",
        "trait_item": "trait",
        "impl_item": "impl",
        "mod_item": "module",
        "macro_definition": "macro",
    },
    "java": {
        "class_declaration": "class",
        "interface_declaration": "interface",
        "enum_declaration": "enum",
        "record_declaration": "record",
        "method_declaration": "method",
        "constructor_declaration": "constructor",
    },
    "c": {
        "function_definition": "function",
        "struct_specifier": "struct",
        "enum_specifier": "enum",
        "type_definition": "type",
        "class_specifier": "class",
        "namespace_definition": "namespace",
    },
    "ruby": {"method": "method", "singleton_method": "method", "class": "class", "module": "module"},
    "php": {
        "function_definition": "function",
        "class_declaration": "class",
        "interface_declaration": "interface",
        "trait_declaration": "trait",
        "method_declaration": "method",
        "enum_declaration": "enum",
    },
}
DEFINITIONS["typescript"] = {
    **DEFINITIONS["javascript"],
    "interface_declaration": "interface",
    "type_alias_declaration": "type",
    "enum_declaration": "enum",
    "abstract_class_declaration": "class",
    "public_field_definition": "field",
}
DEFINITIONS["tsx"] = DEFINITIONS["typescript"]
DEFINITIONS["cpp"] = DEFINITIONS["c"]

IDENTIFIER_TYPES = frozenset(
    {
        "identifier",
        "type_identifier",
        "property_identifier",
        "field_identifier",
        "shorthand_property_identifier",
        "constant",
        "name",
        "namespace_identifier",
        "scoped_identifier",
    }
)
# Values that make a JS/TS `variable_declarator` or `pair` worth calling a definition.
_VALUE_DEFS = frozenset({"arrow_function", "function_expression", "function", "object", "class", "call_expression"})

IMPORT_TYPES = frozenset(
    {
        "import_statement",
        "import_from_statement",
        "import_declaration",
        "import_spec",
        "use_declaration",
        "preproc_include",
        "namespace_use_declaration",
        "require_call",
    }
)

_SPLIT = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_WORD = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "is",
        "it",
        "be",
        "as",
        "at",
        "by",
        "with",
        "from",
        "this",
        "that",
        "not",
        "no",
        "so",
        "if",
        "then",
        "else",
        "when",
        "are",
        "was",
        "were",
        "has",
        "have",
        "had",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "would",
        "will",
        "may",
        "must",
        "into",
        "out",
        "up",
        "its",
        "our",
        "we",
        "you",
        "they",
        "them",
        "their",
        "there",
        "here",
        "what",
        "which",
        "who",
        "how",
        "why",
        "all",
        "any",
        "each",
        "one",
        "two",
        "than",
        "too",
        "very",
        "just",
        "also",
        "only",
        "own",
        "same",
        "such",
        "both",
        "few",
        "more",
        "most",
        "other",
        "some",
        "over",
        "under",
        "again",
        "once",
        "new",
        "use",
        "used",
        "uses",
        "using",
    ]
)


def split_identifier(word: str) -> list[str]:
    """`readContextBlobs` -> read, context, blobs, readcontextblobs; `MAX_FILE` -> max, file, max_file."""
    return list(_split_cached(word))


@lru_cache(maxsize=200_000)
def _split_cached(word: str) -> tuple[str, ...]:
    parts = [p.lower() for piece in word.split("_") for p in _SPLIT.findall(piece)]
    whole = word.lower().strip("_$")
    out = [p for p in parts if len(p) > 1]
    if whole and len(parts) > 1 and len(whole) > 2:
        out.append(whole)
    return tuple(out)


@lru_cache(maxsize=200_000)
def _terms_of_word(word: str) -> tuple[str, ...]:
    return tuple(t for t in _split_cached(word) if t not in STOPWORDS)


def terms_of(text: str) -> Counter[str]:
    """The lexical terms of a piece of code or prose (split identifiers, no stopwords)."""
    c: Counter[str] = Counter()
    for w, n in Counter(_WORD.findall(text)).items():
        for t in _terms_of_word(w):
            c[t] += n
    return c


def path_terms(path: str) -> Counter[str]:
    c: Counter[str] = Counter()
    for seg in re.split(r"[/.\-]", path):
        for t in split_identifier(seg):
            if t not in STOPWORDS:
                c[t] += 1
    return c


@cache
def _query(language: str) -> ts.Query:
    """One query per language capturing definition, import and call nodes (only the node types the
    grammar has: the tables above are shared across dialects)."""
    lang = _parser(language).language
    assert lang is not None
    parts = []
    for kind in DEFINITIONS[language]:
        if lang.id_for_node_kind(kind, True):
            parts.append(f"({kind}) @def")
    for kind in sorted(IMPORT_TYPES):
        if lang.id_for_node_kind(kind, True):
            parts.append(f"({kind}) @imp")
    for kind in ("call_expression", "call"):
        if lang.id_for_node_kind(kind, True):
            parts.append(f"({kind}) @call")
    return ts.Query(lang, "\n".join(parts))


def _name_of(node: ts.Node, language: str) -> str | None:
    n = node.child_by_field_name("name")
    if n is None and node.type == "pair":
        n = node.child_by_field_name("key")
    if n is None and node.type == "impl_item":
        n = node.child_by_field_name("type")
    if n is None and node.type in ("function_definition", "type_definition") and language in ("c", "cpp"):
        d = node.child_by_field_name("declarator")
        while d is not None and d.type not in (
            "identifier",
            "field_identifier",
            "type_identifier",
            "qualified_identifier",
        ):
            d = d.child_by_field_name("declarator") or (d.named_children[0] if d.named_children else None)
        n = d
    if n is None:
        return None
    text = (n.text or b"").decode("utf-8", "replace").strip("'\"`")
    return text or None


def _is_definition(node: ts.Node, kinds: dict[str, str]) -> bool:
    if node.type not in kinds:
        return False
    if node.type in ("variable_declarator", "pair"):
        value = node.child_by_field_name("value")
        if value is None or value.type not in _VALUE_DEFS:
            return False
        # one-liners (`a: 1`, `x = f()`) are not worth a chunk of their own
        return node.end_point[0] > node.start_point[0]
    if node.type in ("struct_specifier", "enum_specifier", "class_specifier"):
        return node.child_by_field_name("body") is not None
    return True


# Test-runner blocks that name a test or a group of tests (Jest, Vitest, Mocha, Jasmine, node:test;
# `.only`, `.skip`, `.concurrent` variants): `describe("title", () => ...)` is a definition of
# kind "test" named by its title, so a test file chunks at its cases rather than at fixed windows.
TEST_BLOCKS = frozenset({"describe", "it", "test", "suite", "context", "fdescribe", "fit", "xdescribe", "xit", "xtest"})
_TEST_LANGUAGES = frozenset({"javascript", "typescript", "tsx"})
_STRING_TYPES = frozenset({"string", "template_string"})
_FUNCTION_TYPES = frozenset({"arrow_function", "function_expression", "function"})


def _test_block(node: ts.Node) -> str | None:
    """The title of a multi-line `describe("title", () => {...})`-style call, else None."""
    if node.end_point[0] == node.start_point[0]:
        return None
    fn = node.child_by_field_name("function")
    while fn is not None and fn.type == "member_expression":
        fn = fn.child_by_field_name("object")
    if fn is None or fn.type != "identifier" or (fn.text or b"").decode() not in TEST_BLOCKS:
        return None
    args = node.child_by_field_name("arguments")
    if args is None or len(args.named_children) < 2:
        return None
    title, body = args.named_children[0], args.named_children[-1]
    if title.type not in _STRING_TYPES or body.type not in _FUNCTION_TYPES:
        return None
    text = " ".join((title.text or b"").decode("utf-8", "replace").strip("'\"`").split())
    return text[:200] or None


def _import_text(node: ts.Node) -> str | None:
    src = node.child_by_field_name("source") or node.child_by_field_name("path")
    if src is not None:
        return (src.text or b"").decode("utf-8", "replace").strip("'\"<>`")
    text = (node.text or b"").decode("utf-8", "replace")
    m = re.search(r"(?:from|import|use|include)\s+([\w./:\\<>\"'-]+)", text)
    return m.group(1).strip("'\";<>") if m else None


def parse_file(path: str, data: bytes, count_tokens: Callable[[str], int] | None = None) -> FileFacts:
    """Facts of one file; never raises on odd content (binary or broken code parses to windows).
    `count_tokens` sizes each chunk (the tokenizer is the caller's); without it a chunk's size is
    its bytes / 4."""
    text = data.decode("utf-8", "replace")
    line_count = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    language = language_of(path)
    defs: list[Definition] = []
    refs: Counter[str] = Counter()
    imports: list[str] = []
    if language is not None and line_count > 0:
        kinds = DEFINITIONS[language]
        tree = _parser(language).parse(data)
        caps = ts.QueryCursor(_query(language)).captures(tree.root_node)
        for node in caps.get("def", []):
            if _is_definition(node, kinds):
                name = _name_of(node, language)
                if name:
                    defs.append(Definition(name, kinds[node.type], node.start_point[0] + 1, node.end_point[0] + 1))
        for node in caps.get("imp", []):
            imp = _import_text(node)
            if imp:
                imports.append(imp)
        for node in caps.get("call", []):
            if language in _TEST_LANGUAGES:
                title = _test_block(node)
                if title is not None:
                    defs.append(Definition(title, "test", node.start_point[0] + 1, node.end_point[0] + 1))
                    continue
            fn = node.child_by_field_name("function") or node.child_by_field_name("method")
            if fn is not None and fn.text in (b"require", b"require_relative", b"import"):
                args = node.child_by_field_name("arguments")
                if args is not None and args.named_children:
                    imports.append((args.named_children[0].text or b"").decode("utf-8", "replace").strip("'\"`"))
        defs.sort(key=lambda d: (d.start, -d.end))
        # references: identifiers as the lexer sees them (a regex over the text is as good for the
        # graph as the syntax tree's identifier nodes, and far cheaper than visiting every node)
        refs = Counter(w for w in _WORD.findall(text) if len(w) > 1)
        for d in defs:
            refs[d.name] -= 1
        refs = Counter({k: v for k, v in refs.items() if v > 0})
    lines = text.split("\n")
    chunks = _chunks(defs, line_count)
    for c in chunks:
        body = "\n".join(lines[c.start - 1 : c.end])
        c.terms = dict(terms_of(body))
        c.tokens = count_tokens(body) if count_tokens else (len(body.encode()) + 3) // 4
        if c.name:
            for t in split_identifier(c.name) if " " not in c.name else terms_of(c.name):
                c.terms[t] = c.terms.get(t, 0) + 2
    return FileFacts(language or "text", line_count, defs, dict(refs), imports, chunks)


def _chunks(defs: list[Definition], line_count: int) -> list[Chunk]:
    """Partitions lines 1..line_count: the outermost definitions no longer than MAX_CHUNK_LINES (a longer
    one is split at its children), and windows of WINDOW_LINES over what lies between."""
    out: list[Chunk] = []

    def windows(start: int, end: int) -> None:
        s = start
        while s <= end:
            e = min(end, s + WINDOW_LINES - 1)
            out.append(Chunk(s, e, ""))
            s = e + 1

    def cover(start: int, end: int, inner: list[Definition]) -> None:
        pos = start
        i = 0
        while i < len(inner):
            d = inner[i]
            if d.start < pos or d.end > end:
                i += 1
                continue
            children = [c for c in inner[i + 1 :] if c.start >= d.start and c.end <= d.end]
            lead = d.start
            if d.start > pos and d.start - pos <= 3:
                lead = pos  # the comment or decorator lines just above belong to the definition
            elif d.start > pos:
                windows(pos, d.start - 1)
            if lead < d.start and (d.end - d.start + 1 > MAX_CHUNK_LINES):
                windows(lead, d.start - 1)
            if d.end - d.start + 1 > MAX_CHUNK_LINES and children:
                cover(d.start, d.end, children)
            elif d.end - d.start + 1 > MAX_CHUNK_LINES:
                # a long leaf: windows, each named after the definition
                s = d.start
                while s <= d.end:
                    e = min(d.end, s + MAX_CHUNK_LINES - 1)
                    out.append(Chunk(s, e, d.name))
                    s = e + 1
            else:
                out.append(Chunk(lead, d.end, d.name))
            pos = d.end + 1
            i += 1 + len(children)
        if pos <= end:
            windows(pos, end)

    cover(1, line_count, defs)
    out.sort(key=lambda c: c.start)
    return out
