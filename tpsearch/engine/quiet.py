"""Quiet the libraries a model loads through while tpsearch shows its own progress."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

# Loggers whose routine chatter (load reports, progress bars, optional-kernel notices, a
# per-call dtype cast notice in 8-bit) would bury tpsearch's own output.
_NOISY_LOGGERS = ("transformers", "bitsandbytes", "accelerate", "huggingface_hub")


@contextlib.contextmanager
def quiet_libraries(importing: bool = True) -> Iterator[None]:
    """Raise the noisy libraries' log level to ERROR for the duration, then restore it, and
    hide transformers' progress bars: with `importing=False` only if it is imported already
    (the lite stack runs without it, and importing it would cost seconds)."""
    if importing:
        import transformers.utils.logging  # noqa: F401  (looked up in sys.modules below)
    hf_logging = sys.modules.get("transformers.utils.logging")
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    bars = hf_logging is not None and hf_logging.is_progress_bar_enabled()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    if hf_logging is not None:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        if bars and hf_logging is not None:
            hf_logging.enable_progress_bar()
