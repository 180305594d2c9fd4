"""Token Prepending (TP) sentence embeddings from a decoder-only LLM, with early exit.

Fu et al., "Token Prepending: A Training-Free Approach for Eliciting Better Sentence Embeddings
from LLMs" (arXiv 2412.11556), with the exact semantics fixed in tp-semantics.md. For a prompt
with a <PST> slot before the text, L decoder layers, TP layers [s, e) and exit layer x:

    h = Embed(prompt ids), with h[pst] = placeholder vector         # (B, T, H)
    for i in 0 .. x-1:                                              # layers after x never run
        if s <= i < e:
            h[b, pst_b] = h[b, last_b]                              # the sentence so far, up front
        h = Layer_i(h)
    if x == L: h = FinalNorm(h)                                     # only at the very end
    embedding_b = h[b, last_b]   (or the mean over the text's tokens)  # (B, H), L2-normalised

The LM head is never built. The layers are the model's own (masks, rotary, sliding windows per
family); the copies run as forward pre-hooks and the exit as a forward hook that stops the pass.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tpsearch.engine import allocator
from tpsearch.engine.backbone import Backbone, load_backbone, load_tokenizer
from tpsearch.engine.calibration import CalibrationStore
from tpsearch.engine.encoder import fingerprint_of
from tpsearch.engine.head_cache import ExitReached, HeadCache
from tpsearch.engine.placeholder import placeholder_vector
from tpsearch.engine.prompt_inputs import ModelInputs, PromptBuilder, PromptRow, PromptView
from tpsearch.engine.quiet import quiet_libraries
from tpsearch.engine.settings import EncoderSettings, PaddingSide, TPSettings, resolve_tp_settings
from tpsearch.engine.sources import WEIGHTS_REVISION
from tpsearch.errors import ConfigError, TruncationWarning

if TYPE_CHECKING:
    import torch

# Settings that change which model is loaded; a variant() must keep them.
_LOADING_FIELDS = ("model", "precision", "device", "trust_remote_code")


@dataclass(frozen=True)
class EncodeStats:
    """What the last `encode` call did, for progress lines and reports."""

    texts: int = 0
    tokens: int = 0  # real prompt tokens fed to the model (template included)
    truncated: int = 0  # texts cut to fit max_length
    seconds: float = 0.0


class TPEncoder:
    """Sentence embeddings with Token Prepending and early exit; `encode` as sentence-transformers.

    >>> encoder = TPEncoder("Qwen/Qwen2.5-0.5B-Instruct")          # doctest: +SKIP
    >>> encoder.encode(["A man is playing a guitar."]).shape        # doctest: +SKIP
    (1, 896)
    """

    def __init__(
        self,
        settings: EncoderSettings | str | None = None,
        *,
        _backbone: Backbone | None = None,
        phase: Callable[[str], None] | None = None,
        **overrides: Any,
    ) -> None:
        """`phase` hears about slow one-time steps of loading (converting a GGUF)."""
        if isinstance(settings, str):
            settings = EncoderSettings(model=settings)
        self.requested = (settings or EncoderSettings()).with_overrides(**overrides)
        self.backbone = _backbone or load_backbone(
            self.requested.model,
            self.requested.precision,
            self.requested.device,
            self.requested.trust_remote_code,
            self.requested.model_cache,
            phase,
        )
        self.tp: TPSettings = resolve_layers(
            self.requested, self.backbone.model_id, self.backbone.num_layers
        )
        self.prompts = PromptBuilder(
            self.backbone.tokenizer, self.tp, self.requested, self.backbone.model_id
        )
        # (H,): only Token Prepending reads it (a mean over the vocabulary: 0.1 s of a cold query)
        self.pst_vector = (
            placeholder_vector(self.backbone, self.requested.pst_init) if self.tp.tp else None
        )
        self._prefix: HeadCache | None = None
        self.last_stats = EncodeStats()

    # -- identity -----------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self.backbone.model_id

    @property
    def dim(self) -> int:
        return self.backbone.hidden_size

    @property
    def resolved_settings(self) -> EncoderSettings:
        """Every setting explicit: storing and reloading these reproduces the same vectors."""
        return replace(
            self.requested,
            model=self.model_id,
            precision=self.backbone.precision,
            template=self.tp.template.name
            if self.tp.template.name != "custom"
            else self.tp.template.text,
            tp=self.tp.tp,
            tp_start=self.tp.tp_start,
            tp_end=self.tp.tp_end,
            exit_layer=self.tp.exit_layer,
            calibration_file=None,
            model_cache=None,
        )

    @property
    def settings(self) -> Mapping[str, object]:
        return describe_settings(
            self.requested, self.tp, self.model_id, self.backbone.precision, self.backbone.revision
        )

    @property
    def fingerprint(self) -> str:
        settings = dict(self.settings)
        del settings["layer settings from"]
        return fingerprint_of(settings)

    @property
    def former_fingerprints(self) -> tuple[str, ...]:
        """Fingerprints earlier versions of tpsearch gave these vectors: before a local
        folder's weights were hashed into it, its revision was None."""
        revision = self.backbone.revision or ""
        if not revision.startswith(WEIGHTS_REVISION):
            return ()
        settings = {**self.settings, "revision": None}
        del settings["layer settings from"]
        return (fingerprint_of(settings),)

    def variant(self, **overrides: Any) -> TPEncoder:
        """The same loaded model with other TP settings (e.g. tp=False for the baseline)."""
        if any(overrides.get(name) is not None for name in _LOADING_FIELDS):
            raise ConfigError(f"a variant shares the loaded model; it keeps {_LOADING_FIELDS}")
        return TPEncoder(self.requested.with_overrides(**overrides), _backbone=self.backbone)

    # -- inputs (see PromptBuilder) -----------------------------------------------------------

    def prompt_rows(self, texts: Sequence[str]) -> list[PromptRow]:
        return self.prompts.rows(texts)

    def build_inputs(
        self, texts: Sequence[str], padding_side: PaddingSide | None = None
    ) -> ModelInputs:
        """The exact model input for `texts` as one padded batch (no prefix cache applied)."""
        return self.prompts.build_inputs(texts, padding_side)

    def explain(self, text: str) -> PromptView:
        """The prompt for `text` token by token: the <PST> slot, the text, what gets pooled."""
        return self.prompts.explain(text)

    # -- encoding -----------------------------------------------------------------------------

    def encode(
        self,
        texts: Sequence[str] | str,
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors; a single string gives one (dim,) vector."""
        single = isinstance(texts, str)
        batch = [texts] if isinstance(texts, str) else list(texts)
        exit_layer = self.tp.exit_layer
        vectors = self._encode(batch, batch_size, (exit_layer,), progress)[exit_layer]
        return vectors[0] if single else vectors

    def encode_all_layers(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> dict[int, np.ndarray]:
        """Embeddings at every exit layer 1..L at once: one pass over the texts, not L passes."""
        exits = tuple(range(1, self.backbone.num_layers + 1))
        return self._encode(list(texts), batch_size, exits, progress)

    def _encode(
        self,
        texts: list[str],
        batch_size: int,
        exits: tuple[int, ...],
        progress: Callable[[int], None] | None,
    ) -> dict[int, np.ndarray]:
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        if not all(isinstance(text, str) for text in texts):
            raise ConfigError("encode() takes a list of strings")
        started = time.perf_counter()
        rows = self.prompt_rows(texts)
        out = {layer: np.zeros((len(texts), self.dim), dtype=np.float32) for layer in exits}
        # Longest first: similar lengths share a batch (little padding), and memory peaks early.
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
        with quiet_libraries(importing=False):
            for start in range(0, len(order), batch_size):
                chosen = order[start : start + batch_size]
                inputs = self._batch([rows[i] for i in chosen], depth=max(exits))
                pooled = self._run(inputs, exits)
                for layer, vectors in pooled.items():
                    out[layer][chosen] = vectors.numpy()
                if progress is not None:
                    progress(len(chosen))
        truncated = sum(row.truncated for row in rows)
        self.last_stats = EncodeStats(
            texts=len(rows),
            tokens=sum(len(row.ids) for row in rows),
            truncated=truncated,
            seconds=time.perf_counter() - started,
        )
        if truncated:
            warnings.warn(
                f"{truncated} of {len(rows)} texts were longer than max length "
                f"{self.requested.max_length} tokens and were cut: raise --max-length or use "
                "smaller chunks",
                TruncationWarning,
                stacklevel=3,
            )
        return out

    def _batch(self, rows: Sequence[PromptRow], depth: int) -> ModelInputs:
        """Pad rows into a batch, leaving the template head to the prefix cache when it applies."""
        prefix = self._prefix_cache(rows, depth)
        return self.prompts.batch(rows, len(prefix.ids) if prefix is not None else 0)

    def _run(self, inputs: ModelInputs, exits: tuple[int, ...]) -> dict[int, torch.Tensor]:
        """One forward pass: (B, H) float32 unit vectors at each hidden_states index in `exits`."""
        import torch

        bb = self.backbone
        device = bb.device
        with torch.inference_mode():
            ids = inputs.input_ids.to(device)  # (B, T)
            if device.type == "cpu" and ids.numel() >= allocator.BULK_TOKENS:
                allocator.keep_freed_memory()  # bulk work on the CPU: reuse freed memory
            mask = inputs.attention_mask.to(device)  # (B, T)
            rows = torch.arange(ids.shape[0], device=device)
            pst = inputs.pst_index.to(device)  # (B,)
            last = inputs.last_index.to(device)  # (B,)

            hidden = bb.embed_tokens(ids.clamp(min=0))  # (B, T, H)
            if self.tp.tp:
                hidden[rows, pst] = self._pst()
            pool = self._pooler(inputs, rows, last)
            pooled: dict[int, torch.Tensor] = {}
            deepest = max(exits)

            def prepend(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                h = args[0] if args else kwargs["hidden_states"]  # (B, T, H), the residual stream
                h[rows, pst] = h[rows, last]

            def capture(layer: int) -> Callable[..., None]:
                def hook(_module: Any, _args: Any, output: Any) -> None:
                    h = output[0] if isinstance(output, tuple) else output  # (B, T, H)
                    pooled[layer] = torch.nn.functional.normalize(pool(h), dim=-1)
                    if layer == deepest:
                        raise ExitReached

                return hook

            handles = []
            if self.tp.tp:
                for i in range(self.tp.tp_start, self.tp.tp_end):
                    handles.append(
                        bb.layers[i].register_forward_pre_hook(prepend, with_kwargs=True)
                    )
            for layer in exits:  # hidden_states[j] is layer j's output; [L] is after the norm
                module = bb.final_norm if layer == bb.num_layers else bb.layers[layer - 1]
                handles.append(module.register_forward_hook(capture(layer)))

            past = inputs.past_length
            cache = self._prefix.for_batch(len(ids)) if past and self._prefix else None
            if past:
                mask = torch.cat([mask.new_ones(len(ids), past), mask], dim=1)
            try:
                bb.model(
                    inputs_embeds=hidden,
                    attention_mask=mask,
                    position_ids=inputs.position_ids.to(device),
                    use_cache=cache is not None,
                    **{bb.cache_argument: cache},
                )
            except ExitReached:
                pass
            finally:
                for handle in handles:
                    handle.remove()
            return {layer: vectors.float().cpu() for layer, vectors in pooled.items()}

    def _pst(self) -> torch.Tensor:
        """The <PST> placeholder, made in `__init__` whenever TP is on."""
        if self.pst_vector is None:
            raise RuntimeError("this encoder runs without Token Prepending: it has no <PST>")
        return self.pst_vector

    def _pooler(
        self, inputs: ModelInputs, rows: torch.Tensor, last: torch.Tensor
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """(B, T, H) hidden states -> (B, H) float32: the last prompt token, or the text's mean."""
        import torch

        if self.requested.pooling == "last":
            return lambda h: h[rows, last].float()
        columns = torch.arange(inputs.input_ids.shape[1], device=last.device)  # (T,)
        start = inputs.text_start.to(last.device)[:, None]
        end = inputs.text_end.to(last.device)[:, None]
        weights = ((columns >= start) & (columns < end)).float()  # (B, T)
        empty = weights.sum(dim=1) == 0
        weights[empty, last[empty]] = 1.0  # an empty text: fall back to the last token
        weights = weights / weights.sum(dim=1, keepdim=True)
        return lambda h: torch.einsum("bt,bth->bh", weights, h.float())

    # -- the <PST> slot and the template head ------------------------------------------------

    def _prefix_cache(self, rows: Sequence[PromptRow], depth: int) -> HeadCache | None:
        """The template head's keys/values through layer `depth`, when every row starts with it."""
        head = self.prompts.cacheable_head(rows)
        if head is None:
            return None
        if self._prefix is None or not self._prefix.serves(head, depth):
            self._prefix = HeadCache.build(self.backbone, head, depth)
        return self._prefix


def resolve_layers(requested: EncoderSettings, model_id: str, num_layers: int) -> TPSettings:
    """The TP settings for a model: flags, else its saved calibration, else presets."""
    calibrated = None
    if requested.calibration_file is not None:
        store = CalibrationStore(requested.calibration_file)
        calibrated = store.get(model_id, requested.pooling)
    return resolve_tp_settings(requested, model_id, num_layers, calibrated)


def load_prompt_builder(settings: EncoderSettings) -> PromptBuilder:
    """The exact model input for these settings, from the tokenizer and config alone."""
    tokenizer, model_id, num_layers = load_tokenizer(
        settings.model, settings.trust_remote_code, settings.model_cache
    )
    tp = resolve_layers(settings, model_id, num_layers)
    return PromptBuilder(tokenizer, tp, settings, model_id)


def describe_settings(
    requested: EncoderSettings,
    tp: TPSettings,
    model_id: str,
    precision: str,
    revision: str | None = None,
) -> dict[str, object]:
    """The settings behind the vectors, as people read them (and hashed into the fingerprint)."""
    return {
        "model": model_id,
        "revision": revision,
        "precision": precision,
        "template": tp.template.text,
        "tp": f"layers [{tp.tp_start}, {tp.tp_end})" if tp.tp else "off",
        "exit_layer": f"{tp.exit_layer} of {tp.num_layers}",
        "pooling": requested.pooling,
        "pst_init": requested.pst_init,
        "max_length": requested.max_length,
        "layer settings from": tp.source,
    }
