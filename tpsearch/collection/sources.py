"""What a scan takes and leaves: settings, patterns, file signatures, skips, stored paths.

`walk.py` walks the folders with these rules and `documents.py` decodes what changed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeGuard

from tpsearch.errors import CollectionError, ConfigError

if TYPE_CHECKING:
    from pathspec import PathSpec

SkipReason = Literal[
    "ignored",  # a .gitignore or .tpsearchignore rule
    "excluded",  # --exclude, not matching --include, or a default exclude
    "hidden",  # a name starting with "."
    "vcs",  # .git, .hg, .svn, ...
    "collection",  # the collection's own folder (--index DIR inside the tree)
    "symlink-loop",  # a link back to a folder being walked, or to one walked already
    "symlink-outside",  # a link to something outside the folder being indexed
    "symlink-duplicate",  # a link to a file taken already (by its real path, or another link)
    "too-large",  # over the size limit
    "binary",  # a known binary suffix, or NUL bytes near the start
    "undecodable",  # neither UTF-8 nor a charset that charset-normalizer recognises
    "unreadable",  # permission denied, a broken link, vanished while scanning
]

VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr", ".jj", "_darcs", "CVS"})
IGNORE_FILES = (".gitignore", ".tpsearchignore")
# Text, but generated: applied only when no --include is given (an include says what you want).
DEFAULT_EXCLUDES = ("*.svg", "*.min.js", "*.min.css", "*.map", "*.lock", "package-lock.json")
_BINARY_SUFFIXES = (
    "png jpg jpeg gif bmp ico webp tif tiff psd pdf zip gz tgz bz2 xz zst 7z rar tar jar whl exe "
    "dll so dylib o a pyc class wasm woff woff2 ttf otf eot mp3 mp4 m4a wav flac ogg mov avi mkv "
    "webm sqlite db doc docx xls xlsx ppt pptx odt npy npz pt bin safetensors gguf faiss parquet"
)
BINARY_SUFFIXES = frozenset("." + suffix for suffix in _BINARY_SUFFIXES.split())
SNIFF_BYTES = 8192
DEFAULT_MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ScanSettings:
    """Which files a scan takes; stored in the collection so that a bare re-run reuses them.

    Include and exclude patterns are gitignore-style and relative to the collection root (the
    folder holding `.tpsearch/`), like `query --path`: a pattern means the same files whichever
    folder a run indexes.
    """

    include: tuple[str, ...] = ()  # empty: every text file
    exclude: tuple[str, ...] = ()  # on top of the ignore files
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    def __post_init__(self) -> None:
        if self.max_file_bytes < 1:
            raise ConfigError(f"the file size limit must be positive, got {self.max_file_bytes}")
        check_patterns(self.include, "include")
        check_patterns(self.exclude, "exclude")

    def to_dict(self) -> dict[str, object]:
        return {
            "include": list(self.include),
            "exclude": list(self.exclude),
            "max_file_bytes": self.max_file_bytes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ScanSettings:
        """The settings stored by `to_dict`; CollectionError when they are damaged."""
        include = data.get("include") or []
        exclude = data.get("exclude") or []
        limit = data.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES)
        if not (_strings(include) and _strings(exclude) and isinstance(limit, int) and limit > 0):
            raise CollectionError(
                f"the collection's stored scan settings are damaged ({data!r}): run "
                "`tpsearch index --reset-filters` (with any --include, --exclude and "
                "--max-file-size you want) to replace them"
            )
        return cls(tuple(include), tuple(exclude), limit)


def compile_patterns(patterns: Sequence[str], option: str) -> PathSpec:
    """Gitignore-style patterns as one spec; ConfigError naming the option for an invalid one."""
    from pathspec import GitIgnoreSpec

    try:
        return GitIgnoreSpec.from_lines(list(patterns))
    except ValueError as error:  # pathspec's GitIgnorePatternError
        raise ConfigError(
            f"invalid --{option} pattern ({error}): use gitignore syntax, e.g. 'docs/', '*.md', "
            "'!keep.md'"
        ) from None


def check_patterns(patterns: Sequence[str], option: str) -> None:
    """Refuse patterns that match nothing: a blank one, a comment, an include of only `!...`;
    and patterns gitignore syntax cannot read."""
    compile_patterns(patterns, option)
    for pattern in patterns:
        if not pattern.strip():
            raise ConfigError(f"an empty --{option} pattern matches no file: leave it out")
        if pattern.startswith("#"):
            raise ConfigError(
                f"--{option} pattern {pattern!r} is a comment in gitignore syntax and matches "
                f"no file: write \\{pattern} for a name starting with #"
            )
    if option == "include" and patterns and all(p.startswith("!") for p in patterns):
        raise ConfigError(
            f"--include patterns that only negate ({', '.join(patterns)}) match no file: "
            "use --exclude for what to leave out"
        )


def _strings(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


@dataclass(frozen=True)
class Signature:
    """What `stat` says about a version of a file. As in git, an edit that keeps the size and
    mtime (`cp -p`, `tar x`, a temporary file renamed over) still changes ctime or inode."""

    size: int
    mtime_ns: int  # 0 when stored: too fresh to trust, the next run compares hashes
    ctime_ns: int
    inode: int
    device: int


def signature_of(info: os.stat_result) -> Signature:
    return Signature(info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev)


@dataclass(frozen=True)
class Candidate:
    """A file the walk would index, with the `stat` that decides whether it changed."""

    path: Path  # absolute
    rel: str  # relative to the collection root, "/"-separated
    stat: Signature


@dataclass(frozen=True)
class Skip:
    """Something the scan left out, and why."""

    rel: str  # a folder ends with "/"
    reason: SkipReason
    detail: str = ""
    stat: Signature | None = None  # for a file rejected for its content: the next scan skips
    # it again without reading it, until its stat changes


@dataclass
class WalkResult:
    files: list[Candidate] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


def parse_size(text: str) -> int:
    """'500k', '2M', '1.5mb', '1G', '4096' -> bytes (binary multiples)."""
    units = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2}
    units |= {"g": 1024**3, "gb": 1024**3}
    raw = text.strip().lower().replace(" ", "")
    number = raw.rstrip("kmgb")
    unit = raw[len(number) :]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    size = value * units.get(unit, 0)
    if unit not in units or not math.isfinite(size) or size < 1:
        raise ConfigError(f"invalid size {text!r}: use a number of bytes or e.g. 500k, 2M, 1G")
    return int(size)


def relative_to_root(path: Path, root: Path) -> str:
    """`path` relative to `root`, "/"-separated; may start with '..' for a path outside it."""
    return Path(os.path.relpath(path, root)).as_posix()


def where(root: Path, rel: str, cwd: Path) -> tuple[Path, str]:
    """A stored path: absolute, and as shown (relative to cwd when below it, else absolute)."""
    absolute = Path(os.path.normpath(root / rel))
    try:
        return absolute, absolute.relative_to(cwd).as_posix()
    except ValueError:
        return absolute, str(absolute)


def is_under(rel: str, source_rel: str) -> bool:
    """Whether a root-relative path lies in (or is) the root-relative source path."""
    if source_rel == ".":
        return not rel.startswith("../") and rel != ".."
    return rel == source_rel or rel.startswith(source_rel.rstrip("/") + "/")


def check_name(path: str) -> None:
    """ConfigError for a path that SQLite cannot store: one that is not valid UTF-8."""
    if not utf8(path):
        raise ConfigError(f"cannot index {printable(path)}: its name is not valid UTF-8; rename it")


def printable(name: str) -> str:
    """A name that is not valid UTF-8 with its odd bytes written as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def utf8(name: str) -> bool:
    """Whether a file name decoded by the OS (undecodable bytes as surrogates) is valid UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def iter_sources(paths: list[Path]) -> Iterator[Path]:
    """Absolute, de-duplicated source paths, a path inside another one dropped."""
    absolute = sorted({Path(os.path.abspath(p)) for p in paths}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in absolute:
        if not any(path == k or path.is_relative_to(k) for k in kept):
            kept.append(path)
    yield from kept
