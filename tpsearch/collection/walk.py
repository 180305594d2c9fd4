"""Walk folders for files to index, honouring ignore files and the scan settings.

The walk only looks at names and `stat` results, so an unchanged tree costs one `stat` per
file; reading and decoding happen later, for files that changed (`documents.read_document`).
Ignore files (`.gitignore`, `.tpsearchignore`) follow git's rules through pathspec: each applies
to the folder it sits in and below, a deeper file wins, and an ignored folder is not entered.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tpsearch.collection.sources import (
    BINARY_SUFFIXES,
    DEFAULT_EXCLUDES,
    IGNORE_FILES,
    VCS_DIRS,
    Candidate,
    ScanSettings,
    Skip,
    SkipReason,
    WalkResult,
    check_name,
    compile_patterns,
    printable,
    relative_to_root,
    signature_of,
    utf8,
)
from tpsearch.errors import ConfigError

if TYPE_CHECKING:
    from pathspec import PathSpec


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


def unreachable(source: Path, root: Path, settings: ScanSettings, path: Path) -> bool:
    """Whether a walk of `source` would pass `path` by (a path below `source` that may be gone
    already): one of the folders or names on the way is hidden, a VCS folder, ignored by an
    ignore file or an excluded folder. `tpsearch watch` drops such changes before a batch.
    (Whether the file itself is indexed, skipped or gone is for the walk that follows.)"""
    source, path = Path(os.path.abspath(source)), Path(os.path.abspath(path))
    if path == source or not path.is_relative_to(source) or not source.is_dir():
        return False
    exclude = _compile(settings.exclude + (() if settings.include else DEFAULT_EXCLUDES), "exclude")
    rules = _Rules()
    if source != root and source.is_relative_to(root):
        for folder in reversed(source.relative_to(root).parents):
            rules = rules.with_folder(root / folder)
    folder = source
    names = path.relative_to(source).parts
    for depth, name in enumerate(names):
        here = folder / name
        is_dir = depth < len(names) - 1 or here.is_dir()
        rules = rules.with_folder(folder)
        shown = relative_to_root(here, root) + ("/" if is_dir else "")
        if name.startswith(".") or (is_dir and name in VCS_DIRS) or rules.ignored(here, is_dir):
            return True
        if is_dir and exclude is not None and exclude.match_file(shown):
            return True
        folder = here
    return False


def _walk_folder(state: _Walk, folder: Path, rel_folder: str, rules: _Rules) -> None:
    """Walk `folder`, whose path relative to the collection root is `rel_folder`: depth
    first, in name order, with a stack of the folders being read rather than recursion, so
    that a tree of any depth is walked (1,100 nested folders ended in a RecursionError)."""
    stack: list[tuple[Iterator[os.DirEntry[str]], str, _Rules]] = []
    _enter(state, stack, folder, rel_folder, rules)
    while stack:
        entries, rel_folder, rules = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        path = Path(entry.path)
        rel = entry.name if rel_folder == "." else f"{rel_folder}/{entry.name}"
        try:
            is_dir = entry.is_dir()  # follows links; a broken link is not a folder
        except OSError:
            is_dir = False
        shown = rel + "/" if is_dir else rel
        if not utf8(entry.name):  # SQLite stores text as UTF-8: such a path cannot be kept
            state.skip(printable(shown), "unreadable", "its name is not valid UTF-8: rename it")
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
            _enter(state, stack, path, rel, rules)
        elif entry.is_symlink():
            state.linked_files.append((path, rel))
        else:
            _consider_file(state, path, rel)


def _enter(
    state: _Walk,
    stack: list[tuple[Iterator[os.DirEntry[str]], str, _Rules]],
    folder: Path,
    rel_folder: str,
    rules: _Rules,
) -> None:
    """Push `folder`'s entries on the stack, unless it is to be skipped."""
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
    stack.append((iter(entries), rel_folder, rules.with_folder(folder)))


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
