"""Turn texts into the exact model input of Token Prepending: token ids, the <PST> slot, indices.

The prompt is tokenized *without* `<PST>` (so it is exactly the plain prompt baseline), then the
slot is inserted at the token boundary where `<PST>` stood: before the first token that ends
after that character. No token is added to the vocabulary; the slot is marked `PST_SLOT` in the
ids and gets its input vector from the encoder. Every index is taken per row, so left and right
padding give the same embeddings, and explicit position ids keep padding from shifting positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tpsearch.engine.settings import (
    PADDING_SIDES,
    EncoderSettings,
    PaddingSide,
    PrefixCache,
    TPSettings,
)
from tpsearch.engine.templates import Filled, Template
from tpsearch.errors import ConfigError, choice_error

if TYPE_CHECKING:
    import torch

PST_SLOT = -1  # the id that marks the <PST> slot in ModelInputs.input_ids
# The template head is worth caching from this many tokens (see benchmarks/bench_encoder.py).
AUTO_CACHE_MIN_TOKENS = 4


@dataclass(frozen=True)
class PromptRow:
    """One text's prompt as token ids (unpadded), with the positions that matter."""

    ids: tuple[int, ...]  # PST_SLOT at the <PST> slot
    pst: int | None  # index of the slot; None without Token Prepending
    text_start: int  # first token of the text (mean pooling span)
    text_end: int  # one past its last token (== text_start for an empty text)
    head: int  # tokens of the constant template head: before both the <PST> slot and the text
    truncated: bool  # the text was cut to fit max_length


@dataclass(frozen=True)
class ModelInputs:
    """The exact input the encoder feeds the model for a batch of texts, one row per text.

    Rows are padded to one length. An independent implementation can reproduce an embedding
    from this alone: embed `input_ids` (the `PST_SLOT` entries get the encoder's `pst_vector`),
    run the layers with `attention_mask` and `position_ids`, copy the hidden state at
    `last_index` to `pst_index` before each TP layer, and read `last_index` at the exit layer.
    When `past_length` > 0 the first `past_length` tokens of every prompt (the template head)
    are not in `input_ids`: their keys and values come from the encoder's prefix cache.
    """

    input_ids: torch.Tensor  # (B, T) int64; PST_SLOT at the slot, pad_id in padding
    attention_mask: torch.Tensor  # (B, T) int64; 1 for real tokens, 0 for padding
    position_ids: torch.Tensor  # (B, T) int64; past_length + index among the row's real tokens
    pst_index: torch.Tensor  # (B,) column of the <PST> slot; -1 without Token Prepending
    last_index: torch.Tensor  # (B,) column of the last prompt token (the one pooled by `last`)
    text_start: torch.Tensor  # (B,) first column of the text's tokens (pooled by `mean`)
    text_end: torch.Tensor  # (B,) one past the text's last column
    truncated: torch.Tensor  # (B,) bool; the text was cut to fit max_length
    past_length: int = 0  # template-head tokens supplied by the prefix cache instead


def tokenize_prompts(
    tokenizer: Any, template: Template, texts: Sequence[str], *, with_pst: bool, max_length: int
) -> list[PromptRow]:
    """One `PromptRow` per text; texts too long for `max_length` are cut (never the template)."""
    fills = [template.fill(text, with_pst=with_pst) for text in texts]
    rows = _tokenize_filled(tokenizer, fills)
    for i, row in enumerate(rows):
        if len(row.ids) > max_length:
            rows[i] = _shorten(tokenizer, template, texts[i], row, with_pst, max_length)
    return rows


def _tokenize_filled(tokenizer: Any, fills: Sequence[Filled]) -> list[PromptRow]:
    encoded = tokenizer(
        [f.prompt for f in fills],
        add_special_tokens=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        split_special_tokens=True,  # "<|im_end|>" inside a document is text, not a control token
    )
    return [
        _place(ids, offsets, special, filled)
        for ids, offsets, special, filled in zip(
            encoded["input_ids"],
            encoded["offset_mapping"],
            encoded["special_tokens_mask"],
            fills,
            strict=True,
        )
    ]


def _place(
    ids: list[int], offsets: list[tuple[int, int]], special: list[int], filled: Filled
) -> PromptRow:
    """Find the text's tokens and the template head, and insert the <PST> slot.

    Special tokens after the prompt (an EOS some tokenizers append) are dropped: the last
    prompt token, which carries the embedding, is the template's own last token.
    """
    real = [j for j in range(len(ids)) if not special[j]]
    after_real = real[-1] + 1 if real else len(ids)
    ids = ids[:after_real]

    def first_ending_after(char: int) -> int:
        return next((j for j in real if offsets[j][1] > char), after_real)

    text_start = first_ending_after(filled.text_start)
    last_in_text = next((j for j in reversed(real) if offsets[j][0] < filled.text_end), -1)
    text_end = max(last_in_text + 1, text_start)
    head = first_ending_after(filled.head_end)
    if filled.pst_char is None:
        return PromptRow(tuple(ids), None, text_start, text_end, head, False)

    slot = first_ending_after(filled.pst_char)
    ids = [*ids[:slot], PST_SLOT, *ids[slot:]]

    def shift(j: int) -> int:
        return j + 1 if j >= slot else j

    return PromptRow(tuple(ids), slot, shift(text_start), shift(text_end), head, False)


def _shorten(
    tokenizer: Any, template: Template, text: str, row: PromptRow, with_pst: bool, max_length: int
) -> PromptRow:
    """Cut `text` at a token boundary until its prompt fits; the template always stays whole."""
    overhead = len(row.ids) - (row.text_end - row.text_start)
    budget = max_length - overhead
    if budget < 1:
        raise ConfigError(
            f"the template alone takes {overhead} tokens, more than max length {max_length}: "
            "raise --max-length or use a shorter template"
        )
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ends = [end for _, end in offsets["offset_mapping"]]
    while budget >= 1:
        cut = text[: ends[min(budget, len(ends)) - 1]] if ends else ""
        filled = template.fill(cut, with_pst=with_pst)
        shorter = _tokenize_filled(tokenizer, [filled])[0]
        if len(shorter.ids) <= max_length:
            return PromptRow(
                shorter.ids, shorter.pst, shorter.text_start, shorter.text_end, shorter.head, True
            )
        budget -= len(shorter.ids) - max_length  # boundary merges can differ by a token or two
    raise ConfigError(f"cannot fit a prompt into max length {max_length}: raise --max-length")


def assemble(
    rows: Sequence[PromptRow], pad_id: int, padding_side: PaddingSide, past_length: int = 0
) -> ModelInputs:
    """Pad `rows` into one batch, leaving out the first `past_length` tokens of every row.

    Behind a cached head the rows are always right-padded: padding between the head and the
    text would push the head out of a sliding attention window that counts columns.
    """
    import torch

    if padding_side not in PADDING_SIDES:
        raise choice_error("padding side", padding_side, PADDING_SIDES)
    if past_length:
        padding_side = "right"

    lengths = [len(row.ids) - past_length for row in rows]
    width = max(lengths, default=0)
    ids: list[list[int]] = []
    mask: list[list[int]] = []
    starts: list[int] = []
    for row, length in zip(rows, lengths, strict=True):
        pad = width - length
        body = list(row.ids[past_length:])
        if padding_side == "left":
            ids.append([pad_id] * pad + body)
            mask.append([0] * pad + [1] * length)
            starts.append(pad - past_length)
        else:
            ids.append(body + [pad_id] * pad)
            mask.append([1] * length + [0] * pad)
            starts.append(-past_length)

    def column(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long)

    pairs = list(zip(starts, rows, strict=True))
    pst = [-1 if row.pst is None else start + row.pst for start, row in pairs]

    attention = torch.tensor(mask, dtype=torch.long).reshape(len(rows), width)
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0) + past_length
    return ModelInputs(
        input_ids=torch.tensor(ids, dtype=torch.long).reshape(len(rows), width),
        attention_mask=attention,
        position_ids=positions,
        pst_index=column(pst),
        last_index=column([start + len(row.ids) - 1 for start, row in pairs]),
        text_start=column([start + row.text_start for start, row in pairs]),
        text_end=column([start + row.text_end for start, row in pairs]),
        truncated=torch.tensor([r.truncated for r in rows], dtype=torch.bool),
        past_length=past_length,
    )


@dataclass(frozen=True)
class TokenView:
    """One position of a prompt as people read it."""

    position: int
    token_id: int | None  # None for the <PST> slot
    text: str  # the token decoded on its own; "<PST>" for the slot
    part: Literal["special", "template", "pst", "text"]
    pooled: bool  # its hidden state at the exit layer goes into the embedding
    cached: bool  # part of the template head whose keys/values are computed once


@dataclass(frozen=True)
class PromptView:
    """The prompt built for one text, token by token, with the <PST> slot and pooling marked."""

    prompt: str
    tokens: tuple[TokenView, ...]
    pst_index: int | None
    last_index: int
    truncated: bool


def describe_prompt(
    tokenizer: Any, prompt: str, row: PromptRow, pooling: str, cached_head: int
) -> PromptView:
    """A `PromptView` of `row`: which token is which, and which ones the pooling reads."""
    special = set(tokenizer.all_special_ids)
    last = len(row.ids) - 1
    views = []
    for position, token in enumerate(row.ids):
        in_text = row.text_start <= position < row.text_end
        part: Literal["special", "template", "pst", "text"]
        if token == PST_SLOT:
            part = "pst"
        elif token in special:
            part = "special"
        else:
            part = "text" if in_text else "template"
        empty_text = row.text_start == row.text_end
        pooled = position == last if pooling == "last" or empty_text else in_text
        views.append(
            TokenView(
                position=position,
                token_id=None if token == PST_SLOT else token,
                text="<PST>" if token == PST_SLOT else tokenizer.decode([token]),
                part=part,
                pooled=pooled,
                cached=position < cached_head,
            )
        )
    return PromptView(prompt, tuple(views), row.pst, last, row.truncated)


def cacheable_head(rows: Sequence[PromptRow], mode: PrefixCache) -> tuple[int, ...] | None:
    """The template head every row starts with, if its keys and values should be reused."""
    if mode == "off" or not rows:
        return None
    head = rows[0].ids[: rows[0].head]
    if not head or (mode == "auto" and len(head) < AUTO_CACHE_MIN_TOKENS):
        return None
    width = len(head)
    for row in rows:
        if row.head < width or row.ids[:width] != head or row.text_start < width:
            return None  # a text merged into the head's last token: run this batch in full
        if len(row.ids) <= width:
            return None  # nothing after the head (an empty text at a template's end)
    return head


class PromptBuilder:
    """Texts to the exact model input for one set of resolved settings.

    It needs the tokenizer and the settings, not the weights: `tpsearch inspect` shows the
    model input of a 7B model without loading it.
    """

    def __init__(
        self, tokenizer: Any, tp: TPSettings, settings: EncoderSettings, model_id: str
    ) -> None:
        self.tokenizer = tokenizer
        self.tp = tp
        self.settings = settings
        self.model_id = model_id  # hub id, or the absolute path of a local folder

    @property
    def pad_id(self) -> int:
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if candidate is not None:
                return int(candidate)
        return 0  # padding is masked out: any id will do

    def rows(self, texts: Sequence[str]) -> list[PromptRow]:
        return tokenize_prompts(
            self.tokenizer,
            self.tp.template,
            texts,
            with_pst=self.tp.tp,
            max_length=self.settings.max_length,
        )

    def batch(self, rows: Sequence[PromptRow], past_length: int = 0) -> ModelInputs:
        return assemble(rows, self.pad_id, self.settings.padding_side, past_length)

    def build_inputs(
        self, texts: Sequence[str], padding_side: PaddingSide | None = None
    ) -> ModelInputs:
        """The exact model input for `texts` as one padded batch (no prefix cache applied)."""
        side = padding_side or self.settings.padding_side
        return assemble(self.rows(texts), self.pad_id, side)

    def cacheable_head(self, rows: Sequence[PromptRow]) -> tuple[int, ...] | None:
        return cacheable_head(rows, self.settings.prefix_cache)

    def explain(self, text: str) -> PromptView:
        """The prompt for `text` token by token: the <PST> slot, the text, what gets pooled."""
        row = self.rows([text])[0]
        head = self.cacheable_head([row]) or ()
        prompt = self.tp.template.fill(text, with_pst=False).prompt
        return describe_prompt(self.tokenizer, prompt, row, self.settings.pooling, len(head))
