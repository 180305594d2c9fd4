"""Errors that tpsearch raises on purpose.

Every message says what went wrong *and* how to fix it. The CLI catches `TpsearchError`
once, prints the message in one red line on stderr and exits with `exit_code`; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class TpsearchError(Exception):
    """Base class of every error tpsearch raises for a user to act on."""

    exit_code = 2
    # What was done before the error, when that is worth showing: `Collection.index` attaches
    # its IndexSummary (the scan is committed before the model loads), for its notices and skips.
    partial: object = None


class ConfigError(TpsearchError):
    """An option or setting has a value tpsearch cannot use."""


class ModelLoadError(TpsearchError):
    """The backbone model or its tokenizer cannot be loaded."""


class DataError(TpsearchError):
    """An input file (evaluation data, a template, ...) cannot be read."""


class CollectionError(TpsearchError):
    """A collection is missing, locked, or was built with other settings."""


class WriterBusy(CollectionError):
    """Another process is writing the collection (it holds the writer lock, or SQLite's)."""


class EncodingError(TpsearchError):
    """The encoder returned something other than one finite vector per text."""


def choice_error(what: str, value: object, valid: list[str] | tuple[str, ...]) -> ConfigError:
    """The error for a value outside a fixed set, listing the valid values."""
    listed = ", ".join(repr(v) for v in valid)
    return ConfigError(f"invalid {what} {value!r}: choose one of {listed}")


class TpsearchWarning(UserWarning):
    """Something the user should know that does not stop the work (shown as one yellow line)."""


class TruncationWarning(TpsearchWarning):
    """Some texts were longer than max_length tokens and were cut."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (libraries' messages run to many lines)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
