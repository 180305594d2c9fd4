"""Read a file's bytes as text: a byte-order mark, else UTF-8, else the best-fitting charset."""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass

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
    if best is None:
        return Unreadable("undecodable", "not UTF-8, and no charset fits")
    return Document(str(best), codecs.lookup(best.encoding).name, 0, digest)
