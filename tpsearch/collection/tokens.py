"""Approximate token counts, without a tokenizer, so that chunking works while no model loads.

A word costs one token per 4 characters (rounded up), a character of a script written without
spaces (Chinese, Japanese, Korean, Thai, ...) one, each punctuation mark one: this tends to
over-count BPE tokens slightly, the safe side for a prompt length limit. A line that only draws
(a title's underline, a rule, a table border) costs one token per 16 characters, about what a
BPE vocabulary spends on a run of one mark (Gemma's: 5 tokens for 70 "-"), not one per mark.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

from tpsearch.collection.structure import LINE_BREAK, is_adornment

ADORNMENT_CHARS_PER_TOKEN = 16

# Scripts written without spaces, where a BPE vocabulary spends about a token per character:
# Thai, Lao, Myanmar, Hangul Jamo, Khmer, kana, Hangul compatibility Jamo, CJK ideographs
# (with extension A and the supplementary planes), Hangul syllables, half-width katakana.
_DENSE = (
    "\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u3040-\u30ff\u3130-\u318f"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0003134f"
)
# One token per character of those scripts; one per started 4 characters of any other word
# ([^\W...]{1,4} matches ceil(len / 4) times in a word); one per punctuation mark.
TOKEN_PIECE = re.compile(rf"[{_DENSE}]|[^\W{_DENSE}]{{1,4}}|[^\w\s]")
TOKEN = re.compile(rf"[{_DENSE}]+|[^\W{_DENSE}]+|[^\w\s]")
DENSE_CHAR = re.compile(rf"[{_DENSE}]")


def approx_tokens(text: str) -> int:
    return sum(line_tokens(line) for line in LINE_BREAK.split(text))


def line_tokens(line: str) -> int:
    if is_adornment(line):
        return math.ceil(len(line.strip()) / ADORNMENT_CHARS_PER_TOKEN)
    return len(TOKEN_PIECE.findall(line))


def token_units(text: str, start: int, end: int, budget: int) -> Iterator[tuple[int, int]]:
    """(where, tokens) of each word and mark of text[start:end]; a word over the budget (a
    data URI, a hash) comes as its 4-character pieces, one token each, so it can be cut.
    Costs are counted from the match's length (as TOKEN_PIECE would count them), not by a
    second regular expression per word: a line of megabytes is cut in about a second."""
    for match in TOKEN.finditer(text, start, end):
        at, length = match.start(), match.end() - match.start()
        if length == 1:
            yield at, 1
            continue
        step = 1 if DENSE_CHAR.match(text, at) else 4  # a run of one script, or a word
        cost = -(-length // step)
        if cost <= budget:
            yield at, cost
        else:
            yield from ((piece, 1) for piece in range(at, match.end(), step))
