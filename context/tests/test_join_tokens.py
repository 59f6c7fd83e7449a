"""`joined_tokens`: the count of adjacent chunks joined, from their counts and the lines around each
join, equals encoding the joined text (over this service's own sources and texts made to break it)."""

from __future__ import annotations

import random
from pathlib import Path

from forgefluid_context.parsing import parse_file
from forgefluid_context.selection import joined_tokens
from forgefluid_context.tokens import count_tokens

SRC = Path(__file__).resolve().parents[1] / "src" / "forgefluid_context"

TRICKY = {
    "a.ts": "function a() {\n  return 1;\n}\n\n\n   \n\t\nfunction b() {\n\treturn 2;   \n}\n  \n",
    "b.py": "x = 1\r\n\r\n\r\ndef f():\r\n    return '\u00a0\u2003'\r\n\r\n  \r\nclass C:\r\n    pass\r\n",
    "c.md": "".join(f"{'#' * (i % 4)} line {i} !!{' ' * (i % 3)}\n{'' if i % 5 else chr(10) * 2}" for i in range(200)),
    "d.js": "".join(
        f"const v{i} = () => {{\n  // <|endoftext|> {i}\n}};\n{'  ' if i % 2 else ''}\n" for i in range(120)
    ),
}


def test_joined_counts_equal_encoding_the_joined_text() -> None:
    sources = {p.name: p.read_text() for p in sorted(SRC.glob("*.py"))} | TRICKY
    rng = random.Random(7)
    checked = 0
    for name, text in sources.items():
        facts = parse_file(name, text.encode(), count_tokens)
        chunks = facts.chunks
        lines = text.split("\n")
        first = {c.start: k for k, c in enumerate(chunks)}
        spans = [(0, len(chunks) - 1)] + [
            (a, min(len(chunks) - 1, a + rng.randint(1, 4)))
            for a in rng.sample(range(len(chunks)), min(20, len(chunks)))
        ]
        for a, b in spans:
            s, e = chunks[a].start, chunks[b].end
            body = "\n".join(lines[s - 1 : e])
            assert joined_tokens(chunks, first, lines, s, e, count_tokens) == count_tokens(body), (name, s, e)
            checked += 1
    assert checked > 100


def test_not_whole_chunks_is_none() -> None:
    text = TRICKY["d.js"]
    facts = parse_file("d.js", text.encode(), count_tokens)
    chunks, lines = facts.chunks, text.split("\n")
    first = {c.start: k for k, c in enumerate(chunks)}
    assert len(chunks) > 2
    assert joined_tokens(chunks, first, lines, chunks[0].start + 1, chunks[1].end, count_tokens) is None
    assert joined_tokens(chunks, first, lines, chunks[0].start, chunks[1].end - 1, count_tokens) is None
