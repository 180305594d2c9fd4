"""Find the files to index: walk folders, honour ignore files, skip what is not text, decode.

The walk only looks at names and `stat` results, so an unchanged tree costs one `stat` per
file; reading, sniffing and decoding happen later, for files that changed (`read_document`).
Ignore files (`.gitignore`, `.tpsearchignore`) follow git's rules through pathspec: each applies
to the folder it sits in and below, a deeper file wins, and an ignored folder is not entered.
"""

from __future__ import annotations

import codecs
import hashlib
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


class _Rules:
    """Ignore-file rules in force in one folder: (folder, spec) pairs, the nearest folder last."""

    def __init__(self, layers: tuple[tuple[str, PathSpec], ...] = ()) -> None:
        self.layers = layers

    def with_folder(self, folder: Path) -> _Rules:
        from pathspec import GitIgnoreSpec

        lines: list[str] = []
        for name in IGNORE_FILES:
            try:
                lines += (folder / name).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
        if not lines:
            return self
        try:
            spec = GitIgnoreSpec.from_lines(lines)
        except ValueError:  # as git does, a line that is no valid pattern is passed over
            spec = GitIgnoreSpec.from_lines([line for line in lines if _valid_pattern(line)])
        return _Rules((*self.layers, (folder.as_posix(), spec)))

    def ignored(self, path: Path, is_dir: bool) -> bool:
        """git semantics: the deepest ignore file with a matching pattern decides."""
        posix = path.as_posix()
        for base, spec in reversed(self.layers):
            local = posix[len(base) :].lstrip("/")
            result = spec.check_file(local + "/" if is_dir else local)
            if result.include is not None:
                return bool(result.include)
        return False


def _valid_pattern(line: str) -> bool:
    from pathspec import GitIgnoreSpec

    try:
        GitIgnoreSpec.from_lines([line])
    except ValueError:
        return False
    return True


@dataclass
class _Walk:
    """What a walk carries down the tree."""

    root: Path
    settings: ScanSettings
    include: PathSpec | None
    exclude: PathSpec | None
    result: WalkResult
    inside: Path | None = None  # the real path of the folder being indexed
    visited: set[tuple[int, int]] = field(default_factory=set)  # folders walked
    own: tuple[int, int] | None = None  # the collection's folder: (device, inode)
    taken: dict[tuple[int, int], str] = field(default_factory=dict)  # files taken: (dev, inode)
    linked: list[tuple[Path, str, _Rules]] = field(default_factory=list)  # walked last
    linked_files: list[tuple[Path, str]] = field(default_factory=list)  # considered last

    def skip(self, rel: str, reason: SkipReason, detail: str = "") -> None:
        """`rel`: relative to the collection root, a folder ending with "/"."""
        self.result.skipped.append(Skip(rel, reason, detail))


def _compile(patterns: tuple[str, ...], option: str) -> PathSpec | None:
    return compile_patterns(patterns, option) if patterns else None


def walk(
    source: Path, root: Path, settings: ScanSettings, own_folder: Path | None = None
) -> WalkResult:
    """Every candidate file under `source` (a folder or one file), and what was skipped.
    `own_folder` (the collection's folder, when it is not hidden) is never walked into.

    Ignore-file patterns are relative to the folder holding the file, as in git;
    --include/--exclude patterns to `root`. Ignore files in the folders from `root` down to
    `source` apply too. A file named as `source` is taken whatever the rules say.
    """
    source, root = Path(os.path.abspath(source)), Path(os.path.abspath(root))
    if not source.exists():
        raise ConfigError(f"no such file or folder: {source}")
    exclude = settings.exclude + (() if settings.include else DEFAULT_EXCLUDES)
    state = _Walk(
        root,
        settings,
        _compile(settings.include, "include"),
        _compile(exclude, "exclude"),
        WalkResult(),
    )
    source_rel = relative_to_root(source, root)
    check_name(source_rel)
    if not source.is_dir():
        _consider_file(state, source, source_rel, explicit=True)
        return state.result
    rules = _Rules()
    if source != root and source.is_relative_to(root):
        for folder in reversed(source.relative_to(root).parents):  # ".", "a", "a/b"
            rules = rules.with_folder(root / folder)
    state.inside = Path(os.path.realpath(source))
    if own_folder is not None and own_folder.is_dir():
        own = own_folder.stat()
        state.own = (own.st_dev, own.st_ino)
    _walk_folder(state, source, source_rel, rules)
    while state.linked:  # linked folders after real ones: a file is found by its real path
        _walk_folder(state, *state.linked.pop(0))
    for path, rel in state.linked_files:
        _consider_file(state, path, rel, linked=True)
    return state.result


def _walk_folder(state: _Walk, folder: Path, rel_folder: str, rules: _Rules) -> None:
    """Walk `folder`, whose path relative to the collection root is `rel_folder`."""
    try:
        info = folder.stat()
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        state.skip(rel_folder + "/", "unreadable", _reason(error))
        return
    if (info.st_dev, info.st_ino) == state.own:
        state.skip(rel_folder + "/", "collection", "tpsearch's own folder")
        return
    if (info.st_dev, info.st_ino) in state.visited:
        state.skip(rel_folder + "/", "symlink-loop", "a folder already walked")
        return
    state.visited.add((info.st_dev, info.st_ino))
    rules = rules.with_folder(folder)
    for entry in entries:
        path = Path(entry.path)
        rel = entry.name if rel_folder == "." else f"{rel_folder}/{entry.name}"
        try:
            is_dir = entry.is_dir()  # follows links; a broken link is not a folder
        except OSError:
            is_dir = False
        shown = rel + "/" if is_dir else rel
        if not _utf8(entry.name):  # SQLite stores text as UTF-8: such a path cannot be kept
            state.skip(_printable(shown), "unreadable", "its name is not valid UTF-8: rename it")
        elif is_dir and entry.name in VCS_DIRS:
            state.skip(shown, "vcs")
        elif entry.name.startswith("."):
            state.skip(shown, "hidden")
        elif rules.ignored(path, is_dir):
            state.skip(shown, "ignored")
        elif is_dir and state.exclude is not None and state.exclude.match_file(shown):
            state.skip(shown, "excluded")
        elif entry.is_symlink() and not _leads_inside(state, path):
            state.skip(shown, "symlink-outside", f"-> {os.path.realpath(path)}")
        elif is_dir and entry.is_symlink():
            state.linked.append((path, rel, rules))
        elif is_dir:
            _walk_folder(state, path, rel, rules)
        elif entry.is_symlink():
            state.linked_files.append((path, rel))
        else:
            _consider_file(state, path, rel)


def check_name(path: str) -> None:
    """ConfigError for a path that SQLite cannot store: one that is not valid UTF-8."""
    if not _utf8(path):
        raise ConfigError(
            f"cannot index {_printable(path)}: its name is not valid UTF-8; rename it"
        )


def _printable(name: str) -> str:
    """A name that is not valid UTF-8 with its odd bytes written as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _utf8(name: str) -> bool:
    """Whether a file name decoded by the OS (undecodable bytes as surrogates) is valid UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _leads_inside(state: _Walk, link: Path) -> bool:
    """Whether a link leads into the folder being indexed (a broken link counts as inside:
    it is reported as unreadable)."""
    target = Path(os.path.realpath(link))
    return state.inside is None or not target.exists() or target.is_relative_to(state.inside)


def _consider_file(
    state: _Walk, path: Path, rel: str, explicit: bool = False, linked: bool = False
) -> None:
    """Pattern, size and suffix checks; a file named `explicit`ly is exempt from patterns.
    A `linked` file (a link, considered after every real file) is skipped when the file it
    leads to is taken already."""
    if not explicit and (
        (state.exclude is not None and state.exclude.match_file(rel))
        or (state.include is not None and not state.include.match_file(rel))
    ):
        state.skip(rel, "excluded")
        return
    try:
        info = path.stat()
    except OSError as error:
        state.skip(rel, "unreadable", _reason(error))
        return
    limit = state.settings.max_file_bytes
    first = state.taken.get((info.st_dev, info.st_ino))
    if linked and first is not None:
        state.skip(rel, "symlink-duplicate", f"the same file as {first}")
    elif not path.is_file():
        state.skip(rel, "unreadable", "not a regular file")
    elif path.suffix.lower() in BINARY_SUFFIXES:
        state.skip(rel, "binary", path.suffix.lower())
    elif info.st_size > limit:
        state.skip(rel, "too-large", f"{info.st_size} bytes > {limit}")
    else:
        state.result.files.append(Candidate(path, rel, signature_of(info)))
        state.taken.setdefault((info.st_dev, info.st_ino), rel)


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


# --- reading --------------------------------------------------------------------------------

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


def iter_sources(paths: list[Path]) -> Iterator[Path]:
    """Absolute, de-duplicated source paths, a path inside another one dropped."""
    absolute = sorted({Path(os.path.abspath(p)) for p in paths}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in absolute:
        if not any(path == k or path.is_relative_to(k) for k in kept):
            kept.append(path)
    yield from kept
