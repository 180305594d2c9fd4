"""The <PST> slot's input vector. The paper (Table 4) found the choice moves STS scores by at
most 0.01 points: zeros, ones, random, or an existing token's embedding all work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tpsearch.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from tpsearch.engine.backbone import Backbone

ROWS_PER_STEP = 8192  # vocabulary rows read at a time: no float32 copy of a 150k-row matrix


def placeholder_vector(backbone: Backbone, how: str) -> torch.Tensor:
    """(H,) in the space of the embedding layer's output, in the backbone's dtype and device.

    `how`: zeros, mean (of the vocabulary's embeddings), random (seeded, with their spread),
    or token:<text> (that one token's embedding, e.g. `token: ` for a space).
    """
    import torch

    embed = backbone.embed_tokens
    weight: torch.Tensor = embed.weight  # type: ignore[assignment]  # (V, H)
    scale = float(getattr(embed, "embed_scale", 1.0))  # Gemma scales inside the embedding
    if how == "zeros":
        vector = torch.zeros(weight.shape[1])
    elif how == "mean":
        vector = _moments(weight)[0] * scale
    elif how == "random":
        mean, mean_square = _moments(weight)
        std = float((mean_square - mean**2).mean().sqrt())
        vector = torch.randn(weight.shape[1], generator=torch.Generator().manual_seed(0))
        vector = vector * std * scale
    else:
        text = how.removeprefix("token:")
        ids = backbone.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ConfigError(
                f"--pst-init {how!r}: {text!r} is {len(ids)} tokens for this tokenizer; "
                "give text that is exactly one token (e.g. 'token: ' for a space)"
            )
        with torch.inference_mode():
            vector = embed(torch.tensor([ids], device=weight.device))[0, 0]
    return vector.to(device=backbone.device, dtype=backbone.dtype)


def _moments(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 mean and mean square of the rows, a slice at a time."""
    total = square = None
    for part in matrix.split(ROWS_PER_STEP):
        part = part.float()
        total = part.sum(dim=0) if total is None else total + part.sum(dim=0)
        square = (part * part).sum(dim=0) if square is None else square + (part * part).sum(dim=0)
    assert total is not None and square is not None
    return total / matrix.shape[0], square / matrix.shape[0]
