"""Which files a scan takes, which it skips and why, and how their bytes become text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tpsearch.collection.documents import read_document
from tpsearch.collection.sources import ScanSettings, parse_size
from tpsearch.collection.walk import walk
from tpsearch.errors import CollectionError, ConfigError


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def scan(source: Path, root: Path | None = None, **settings: object):  # type: ignore[no-untyped-def]
    result = walk(source, root or source, ScanSettings(**settings))  # type: ignore[arg-type]
    return {f.rel for f in result.files}, {s.rel: s.reason for s in result.skipped}


def test_gitignore_and_tpsearchignore_follow_git_rules(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".gitignore": "*.log\n!keep.log\nbuild/\n",
            "a.md": "a",
            "x.log": "x",
            "keep.log": "k",
            "build/out.md": "generated",
            "sub/.gitignore": "secret.md\n",
            "sub/.tpsearchignore": "drafts/\n",
            "sub/secret.md": "s",
            "sub/ok.md": "ok",
            "sub/drafts/d.md": "d",
            "other/secret.md": "only sub/ ignores secret.md",
        },
    )
    files, skipped = scan(tmp_path)
    assert files == {"a.md", "keep.log", "sub/ok.md", "other/secret.md"}
    assert skipped == {
        "x.log": "ignored",
        "build/": "ignored",
        "sub/secret.md": "ignored",
        "sub/drafts/": "ignored",
        ".gitignore": "hidden",  # hidden files like any other: counted, never indexed
        "sub/.gitignore": "hidden",
        "sub/.tpsearchignore": "hidden",
    }


def test_ignore_files_above_the_scanned_folder_apply(tmp_path: Path) -> None:
    write(tmp_path, {".gitignore": "docs/build/\n", "docs/a.md": "a", "docs/build/b.md": "b"})
    files, skipped = scan(tmp_path / "docs", tmp_path)
    assert files == {"docs/a.md"}
    assert skipped == {"docs/build/": "ignored"}


def test_hidden_and_vcs_folders_are_skipped_and_counted(tmp_path: Path) -> None:
    write(tmp_path, {".git/config": "x", ".venv/lib.py": "x", ".env": "SECRET=1", "a.md": "a"})
    files, skipped = scan(tmp_path)
    assert files == {"a.md"}
    assert skipped == {".git/": "vcs", ".venv/": "hidden", ".env": "hidden"}


def test_binary_suffixes_and_size_limit(tmp_path: Path) -> None:
    write(tmp_path, {"logo.png": b"\x89PNG", "big.txt": "x" * 2000, "small.txt": "x"})
    files, skipped = scan(tmp_path, max_file_bytes=1000)
    assert files == {"small.txt"}
    assert skipped == {"logo.png": "binary", "big.txt": "too-large"}


def test_include_and_exclude_patterns(tmp_path: Path) -> None:
    write(tmp_path, {"a.md": "", "b.txt": "", "drafts/c.md": "", "logo.svg": "<svg/>"})
    files, skipped = scan(tmp_path)
    assert files == {"a.md", "b.txt", "drafts/c.md"}
    assert skipped == {"logo.svg": "excluded"}  # generated text, skipped by default
    files, skipped = scan(tmp_path, include=("*.md", "*.svg"), exclude=("drafts/",))
    assert files == {"a.md", "logo.svg"}  # an include says what you want: no default excludes
    assert skipped == {"b.txt": "excluded", "drafts/": "excluded"}


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_symlink_loops_end_and_are_reported(tmp_path: Path) -> None:
    write(tmp_path, {"docs/a.md": "a"})
    (tmp_path / "docs" / "loop").symlink_to(tmp_path / "docs")
    (tmp_path / "again").symlink_to(tmp_path / "docs")
    (tmp_path / "dangling.md").symlink_to(tmp_path / "missing.md")
    files, skipped = scan(tmp_path)
    assert files == {"docs/a.md"}  # found once, not once per link
    assert skipped == {
        "again/": "symlink-loop",  # the same folder as docs/: walked once, by its real path
        "docs/loop/": "symlink-loop",
        "dangling.md": "unreadable",
    }


def test_a_file_named_explicitly_is_taken_whatever_the_rules(tmp_path: Path) -> None:
    write(tmp_path, {".gitignore": "*.md\n", "notes.md": "n"})
    files, _ = scan(tmp_path / "notes.md", tmp_path)
    assert files == {"notes.md"}


def test_a_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or folder"):
        scan(tmp_path / "nope")


def test_utf8_with_and_without_bom() -> None:
    plain = read_document("héllo\n".encode())
    with_bom = read_document(b"\xef\xbb\xbf" + "héllo\n".encode())
    assert (plain.text, plain.bom) == ("héllo\n", 0)  # type: ignore[union-attr]
    assert (with_bom.text, with_bom.bom, with_bom.encoding) == ("héllo\n", 3, "utf-8")  # type: ignore[union-attr]


def test_utf16_with_bom_and_legacy_charsets_are_decoded() -> None:
    text = "Schöne Grüße aus Köln. Die Straße führt über den Fluß zu größeren Häusern. " * 3
    utf16 = read_document(b"\xff\xfe" + text.encode("utf-16-le"))
    latin1 = read_document(text.encode("latin-1"))
    assert utf16.text == text and utf16.bom == 2  # type: ignore[union-attr]
    assert latin1.text == text  # type: ignore[union-attr]


def test_binary_and_undecodable_content_are_reasons_not_crashes() -> None:
    assert read_document(b"PK\x03\x04\x00\x00 zip").reason == "binary"  # type: ignore[union-attr]
    assert read_document(bytes(range(128, 256)) * 20).reason == "undecodable"  # type: ignore[union-attr]
    assert read_document(b"\xff\xfe\x41\xd8").reason == "undecodable"  # type: ignore[union-attr]


def test_parse_size() -> None:
    assert parse_size("4096") == 4096
    assert parse_size("500k") == 500 * 1024
    assert parse_size("1.5M") == 3 * 512 * 1024
    assert parse_size("1gb") == parse_size("1G") == 1024**3
    for text in ("lots", "0", "0.5", "-3k", "inf", "nan", "1e400", "2x"):
        with pytest.raises(ConfigError, match="invalid size"):
            parse_size(text)


def test_damaged_stored_scan_settings_are_a_clear_error() -> None:
    assert ScanSettings.from_dict(ScanSettings(("*.md",)).to_dict()) == ScanSettings(("*.md",))
    for damaged in ({"include": "*.md"}, {"exclude": [1]}, {"max_file_bytes": "1M"}):
        with pytest.raises(CollectionError, match="damaged"):
            ScanSettings.from_dict(damaged)


def test_include_and_exclude_are_relative_to_the_collection_root(tmp_path: Path) -> None:
    write(tmp_path, {"docs/api/a.md": "", "docs/api/b.txt": "", "docs/internal/x.md": ""})
    files, skipped = scan(tmp_path / "docs" / "api", tmp_path, include=("docs/api/*.md",))
    assert files == {"docs/api/a.md"} and skipped == {"docs/api/b.txt": "excluded"}
    files, skipped = scan(tmp_path / "docs" / "internal", tmp_path, exclude=("/docs/internal/",))
    assert files == set() and skipped == {"docs/internal/x.md": "excluded"}
    files, skipped = scan(tmp_path / "docs", tmp_path, exclude=("docs/internal/",))
    assert files == {"docs/api/a.md", "docs/api/b.txt"}
    assert skipped == {"docs/internal/": "excluded"}  # an excluded folder is not entered


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_linked_files_are_taken_once_and_links_out_of_the_source_are_skipped(
    tmp_path: Path,
) -> None:
    write(tmp_path, {"docs/sub/a.md": "a", "docs/.private/p.md": "p", "other/o.md": "o"})
    docs = tmp_path / "docs"
    (docs / "alias.md").symlink_to(docs / "sub" / "a.md")  # found by its real path already
    (docs / "p.md").symlink_to(docs / ".private" / "p.md")  # found only through the link
    (docs / "up").symlink_to(tmp_path)  # the parent: would pull in other/o.md
    (docs / "o.md").symlink_to(tmp_path / "other" / "o.md")
    files, skipped = scan(docs, tmp_path)
    assert files == {"docs/sub/a.md", "docs/p.md"}
    assert skipped == {
        "docs/.private/": "hidden",
        "docs/alias.md": "symlink-duplicate",
        "docs/up/": "symlink-outside",
        "docs/o.md": "symlink-outside",
    }
    files, _ = scan(tmp_path, tmp_path)  # from the root, other/o.md is inside: by its own path
    assert files == {"docs/sub/a.md", "docs/p.md", "other/o.md"}
