"""Read a file's bytes as text: a byte-order mark, else UTF-8, else the best-fitting charset."""

from __future__ import annotations

import codecs
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from tpsearch.collection.sources import SNIFF_BYTES, SkipReason

BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass(frozen=True)
class Document:
    """A file's text, and how to get back to its bytes (for byte offsets)."""

    text: str
    encoding: str  # a Python codec name
    bom: int  # bytes of byte-order mark before the text
    sha256: str  # of the raw bytes


@dataclass(frozen=True)
class Unreadable:
    reason: SkipReason
    detail: str


# Never block in open(): a file swapped for a FIFO after the scan would wait for a writer
# forever (and a device could do anything); what was opened is then checked with fstat.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_BINARY", 0)
)


def read_bytes(path: Path, limit: int) -> bytes | Unreadable:
    """Up to `limit + 1` bytes of the regular file at `path` (one more than allowed: the
    caller sees it is too large), or why it cannot be read."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as error:
        return Unreadable("unreadable", error.strerror or type(error).__name__)
    try:
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return Unreadable("unreadable", "not a regular file (replaced since the scan)")
            return file.read(limit + 1)
    except OSError as error:
        return Unreadable("unreadable", error.strerror or type(error).__name__)


def read_document(data: bytes) -> Document | Unreadable:
    """Decode a file's bytes: a BOM, else UTF-8, else charset-normalizer's best guess."""
    digest = hashlib.sha256(data).hexdigest()
    for bom, encoding in BOMS:
        if data.startswith(bom):
            try:
                return Document(data[len(bom) :].decode(encoding), encoding, len(bom), digest)
            except UnicodeDecodeError:
                return Unreadable("undecodable", f"invalid {encoding} after its byte-order mark")
    if b"\x00" in data[:SNIFF_BYTES]:
        return Unreadable("binary", "NUL bytes")
    try:
        return Document(data.decode("utf-8"), "utf-8", 0, digest)
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    western = _western(data)
    if western is not None and (best is None or not _other_script(str(best))):
        return Document(western, "cp1252", 0, digest)
    if best is None:
        return Unreadable("undecodable", "not UTF-8, and no charset fits")
    return Document(str(best), codecs.lookup(best.encoding).name, 0, digest)


# Signs that follow a letter in Western text ("n°", "l’eau", "m²"); any other sign right after a
# letter is a letter of another code page read as cp1252 (Polish "ł" as "³", "ą" as "¹").
_AFTER_LETTER = frozenset("°º’”»…–—™®©²")


def _western(data: bytes) -> str | None:
    """The text as Windows-1252 (a superset of Latin-1's letters), if it reads as Western
    text: charset detectors often name a Baltic or Central European code page for short
    French or German files ("chāteau"), so the most common legacy encoding goes first."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:  # bytes cp1252 leaves undefined: not Western text
        return None
    wide = [i for i, ch in enumerate(text) if ord(ch) > 0x7F]
    odd = [
        i
        for i in wide
        if not text[i].isalpha()
        and text[i] not in _AFTER_LETTER
        and i > 0
        and text[i - 1].isalpha()
    ]
    return text if len(odd) <= len(wide) // 20 else None


def _other_script(text: str) -> bool:
    """Whether `text` has letters of a script other than Latin (Cyrillic, Greek, Hebrew...):
    then a detector that found it knows better than a guess of cp1252."""
    return any(ch.isalpha() and ord(ch) > 0x24F and not 0x1E00 <= ord(ch) <= 0x1EFF for ch in text)
