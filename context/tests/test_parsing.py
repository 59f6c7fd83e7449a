"""Parsing: definitions, references, imports and the chunk partition, per language, on small sources."""

from __future__ import annotations

import pytest

from forgefluid_context.parsing import language_of, parse_file, split_identifier, terms_of

SOURCES: dict[str, tuple[str, set[str], str]] = {
    # path: (source, definitions expected, an import expected)
    "a.ts": (
        "import { Money } from './money';\nexport class Ledger {\n  reserve(a: Money) {\n    return a;\n  }\n}\n"
        "export function releaseCredits(x: number) {\n  return x;\n}\ninterface Hold { id: string }\n",
        {"Ledger", "reserve", "releaseCredits", "Hold"},
        "./money",
    ),
    "b.js": ("const fs = require('fs');\nfunction readAll(p) {\n  return fs.readFileSync(p);\n}\n", {"readAll"}, "fs"),
    "c.py": (
        "import os\nfrom pkg.mod import thing\n\nclass Store:\n    def load(self):\n        return os.getcwd()\n",
        {"Store", "load"},
        "pkg.mod",
    ),
    "d.go": (
        'package main\n\nimport "net/http"\n\ntype Server struct{}\n\nfunc (s *Server) Serve() {}\n'
        "func main() { http.ListenAndServe() }\n",
        {"Server", "Serve", "main"},
        "net/http",
    ),
    "e.rs": (
        "use std::collections::HashMap;\nstruct Cache { m: HashMap<String, u8> }\n"
        "impl Cache {\n    fn get(&self) -> u8 { 0 }\n}\n",
        {"Cache", "get"},
        "std::collections::HashMap",
    ),
    "F.java": (
        "import java.util.List;\npublic class Repo {\n  public List<String> names() { return null; }\n}\n",
        {"Repo", "names"},
        "java.util.List",
    ),
    "g.c": ("#include <stdio.h>\nint add(int a, int b) {\n  return a + b;\n}\n", {"add"}, "stdio.h"),
    "h.cpp": (
        '#include "widget.h"\nnamespace ui {\nclass Widget {\n public:\n  void draw() {}\n};\n}\n',
        {"ui", "Widget", "draw"},
        "widget.h",
    ),
    "i.rb": (
        "require 'json'\nmodule Billing\n  class Invoice\n    def total\n      1\n    end\n  end\nend\n",
        {"Billing", "Invoice", "total"},
        "json",
    ),
    "j.php": (
        "<?php\nuse App\\Models\\User;\nclass Controller {\n  public function show() { return 1; }\n}\n"
        "function helper() {}\n",
        {"Controller", "show", "helper"},
        "App\\Models\\User",
    ),
}


@pytest.mark.parametrize("path", sorted(SOURCES))
def test_definitions_and_imports_per_language(path: str) -> None:
    source, defs, imp = SOURCES[path]
    facts = parse_file(path, source.encode())
    assert facts.language == language_of(path)
    assert defs <= {d.name for d in facts.definitions}
    assert imp in facts.imports


def test_references_count_uses_beyond_the_definition_itself() -> None:
    facts = parse_file("x.ts", b"function alpha() { return beta() + beta(); }\nfunction beta() { return 1; }\n")
    assert "alpha" not in facts.references  # only its definition
    assert facts.references["beta"] == 2  # two uses; the defining name is not a use
    facts2 = parse_file("y.ts", b"import { beta } from './x';\nexport const zeta = () => beta() + beta();\n")
    assert facts2.references["beta"] == 3


def test_chunks_partition_every_line_exactly_once() -> None:
    body = "\n".join(f"function f{i}() {{\n  return {i};\n}}\n" for i in range(30)) + "\nconst tail = 1;\n"
    facts = parse_file("p.ts", body.encode())
    pos = 1
    for c in facts.chunks:
        assert c.start == pos
        assert c.end >= c.start
        pos = c.end + 1
    assert pos == facts.lines + 1
    assert any(c.name == "f7" for c in facts.chunks)


def test_a_long_definition_is_split_at_its_children() -> None:
    methods = "\n".join(f"  m{i}() {{\n" + "    x();\n" * 8 + "  }" for i in range(20))
    facts = parse_file("k.ts", f"class Big {{\n{methods}\n}}\n".encode())
    names = [c.name for c in facts.chunks]
    assert "m3" in names and "Big" not in names
    assert max(c.end - c.start + 1 for c in facts.chunks) <= 120


def test_files_without_a_grammar_or_with_broken_code_still_chunk() -> None:
    md = parse_file("README.md", ("line\n" * 100).encode())
    assert md.language == "text" and md.definitions == [] and len(md.chunks) == 3
    broken = parse_file("bad.py", b"def (:\n  ???\n\x00\xff\n")
    assert broken.lines == 3 and broken.chunks


def test_identifiers_split_on_case_and_underscores() -> None:
    assert split_identifier("readContextBlobs") == ["read", "context", "blobs", "readcontextblobs"]
    assert split_identifier("MAX_FILE_BYTES")[:3] == ["max", "file", "bytes"]
    assert split_identifier("HTTPServer")[:2] == ["http", "server"]
    assert "the" not in terms_of("the reserveCredits of the ledger")


def test_token_counts_come_from_the_given_tokenizer() -> None:
    facts = parse_file("t.py", b"def a():\n    return 1\n", count_tokens=lambda s: 7)
    assert all(c.tokens == 7 for c in facts.chunks)


def test_test_runner_blocks_are_definitions_named_by_their_titles() -> None:
    cases = "\n".join(
        f'  it("settles credit hold {k}", async () => {{\n' + "    expect(1).toBe(1);\n" * 30 + "  });"
        for k in range(5)
    )
    src = f'import {{ x }} from "./x";\n\ndescribe("the ledger", () => {{\n{cases}\n}});\n'
    f = parse_file("ledger.test.ts", src.encode())
    tests = [(d.name, d.start, d.end) for d in f.definitions if d.kind == "test"]
    assert tests[0] == ("the ledger", 3, f.lines)
    assert [n for n, _s, _e in tests[1:]] == [f"settles credit hold {k}" for k in range(5)]
    # the describe is longer than a chunk: the file chunks at its cases, each named by its title,
    # and the title's words are the chunk's terms
    named = [c for c in f.chunks if c.name.startswith("settles")]
    assert len(named) == 5
    assert all(c.start <= s and c.end == e for c, (_n, s, e) in zip(named, tests[1:], strict=True))
    assert named[0].terms.get("settles", 0) >= 3 and "credit" in named[0].terms
    # a one-line call, a call without a function body, and a call of another function are not tests
    other = parse_file(
        "b.test.ts", b'it("one line", () => {});\ntest("no body",\n  fn);\nrun("x", () => {\n  go();\n});\n'
    )
    assert [d for d in other.definitions if d.kind == "test"] == []
