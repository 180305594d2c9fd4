"""Keys and values of the constant template head, computed once and reused by every batch.

The tokens before both the <PST> slot and the text ("This sentence :") never attend to
anything Token Prepending changes, so their keys and values are the same for every text
(tp-semantics.md). They are computed once per encoder, at batch size 1, and copied into each
batch; a batch whose rows do not all start with exactly these tokens (a text merged into
the head's last token) simply runs in full.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tpsearch.engine.quiet import quiet_libraries

if TYPE_CHECKING:
    from tpsearch.engine.backbone import Backbone


class ExitReached(Exception):
    """Raised by a forward hook to stop a pass: nothing after that module runs."""


@dataclass(frozen=True)
class HeadCache:
    """The head's keys and values in layers 0 .. depth-1, for batch size 1."""

    ids: tuple[int, ...]
    depth: int
    cache: Any  # a transformers DynamicCache, or the lite stack's LiteCache

    @classmethod
    def build(cls, backbone: Backbone, ids: tuple[int, ...], depth: int) -> HeadCache:
        import torch

        def stop(*_: Any) -> None:
            raise ExitReached

        cache = _new_cache(backbone.model)
        handle = backbone.layers[depth - 1].register_forward_hook(stop)
        with torch.inference_mode(), quiet_libraries(importing=False):
            tokens = torch.tensor([ids], device=backbone.device)  # (1, P)
            try:
                backbone.model(
                    inputs_embeds=backbone.embed_tokens(tokens),
                    attention_mask=torch.ones_like(tokens),
                    position_ids=torch.arange(len(ids), device=backbone.device)[None],
                    use_cache=True,
                    **{backbone.cache_argument: cache},
                )
            except ExitReached:
                pass
            finally:
                handle.remove()
        return cls(ids, depth, cache)

    def serves(self, ids: tuple[int, ...], depth: int) -> bool:
        return self.ids == ids and self.depth >= depth

    def for_batch(self, batch_size: int) -> Any:
        """A fresh copy for one batch (the forward pass appends to it)."""
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(batch_size)
        return cache


def _new_cache(model: Any) -> Any:
    """An empty KV cache of the kind `model` takes: the lite stack's own, else transformers'."""
    if hasattr(model, "new_cache"):
        return model.new_cache()
    from transformers import DynamicCache

    return DynamicCache(config=model.config)
