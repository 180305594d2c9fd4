"""Chunks follow the document's structure, fit the budget, and point back at exact bytes."""

from __future__ import annotations

import itertools

import pytest

from tpsearch.collection.chunking import (
    ChunkSettings,
    approx_tokens,
    chunk_document,
    detect_format,
    embedding_text,
)
from tpsearch.errors import ConfigError

TINY = ChunkSettings(max_tokens=40, overlap_tokens=10)


def paragraph(word: str, n: int = 12) -> str:
    return " ".join(f"{word}{i}" for i in range(n)) + "."


def test_markdown_heading_paths() -> None:
    doc = "\n".join(
        [
            "# Guide",
            "",
            paragraph("intro"),
            "",
            "## Install",
            "",
            paragraph("install"),
            "",
            "### With pip { #pip }",
            "",
            paragraph("pip"),
            "",
            "## Use",
            "",
            paragraph("use"),
        ]
    )
    chunks = chunk_document(doc, "markdown", TINY)
    by_word = {c.text.split()[-1].rstrip("."): c.heading for c in chunks}
    assert by_word["intro11"] == ("Guide",)
    assert by_word["install11"] == ("Guide", "Install")
    assert by_word["pip11"] == ("Guide", "Install", "With pip")  # mkdocs anchor dropped
    assert by_word["use11"] == ("Guide", "Use")


def test_a_section_that_fits_is_one_chunk_with_its_subsections() -> None:
    doc = "# Title\n\nShort intro.\n\n## Part\n\nShort part.\n"
    chunks = chunk_document(doc, "markdown", TINY)
    assert len(chunks) == 1
    assert chunks[0].heading == ("Title",)
    assert (chunks[0].start_line, chunks[0].end_line) == (1, 7)


def test_hashes_in_fenced_code_are_not_headings() -> None:
    doc = "# Real\n\n```bash\n# a shell comment\necho hi\n```\n\n" + paragraph("after", 40)
    chunks = chunk_document(doc, "markdown", TINY)
    assert all(c.heading == ("Real",) for c in chunks)
    assert any("# a shell comment" in c.text for c in chunks)


def test_setext_headings_and_front_matter() -> None:
    front = ["---", "title: x", "---", ""]
    big = ["Big Title", "=========", "", paragraph("a", 40), ""]
    small = ["Smaller", "-------", "", paragraph("b", 40)]
    doc = "\n".join([*front, *big, *small])
    chunks = chunk_document(doc, "markdown", TINY)
    assert {c.heading for c in chunks} == {(), ("Big Title",), ("Big Title", "Smaller")}
    assert chunks[0].text.startswith("---\ntitle: x")  # front matter is text, not a heading


def test_rst_titles_by_adornment_order() -> None:
    doc = "\n".join(
        [
            "=====",
            "Guide",
            "=====",
            "",
            paragraph("intro", 40),
            "",
            "Setup",
            "-----",
            "",
            paragraph("setup", 40),
            "",
            "Details",
            "~~~~~~~",
            "",
            paragraph("details", 40),
        ]
    )
    chunks = chunk_document(doc, "rst", TINY)
    headings = {c.heading for c in chunks}
    assert headings == {("Guide",), ("Guide", "Setup"), ("Guide", "Setup", "Details")}


def test_plain_text_splits_at_paragraphs() -> None:
    doc = "\n\n".join(paragraph(w, 14) for w in ("alpha", "beta", "gamma"))  # 29 tokens each
    chunks = chunk_document(doc, "text", TINY)
    assert [c.text.split()[0] for c in chunks] == ["alpha0", "beta0", "gamma0"]
    assert all(c.heading == () for c in chunks)


ENCODINGS = [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe")]


@pytest.mark.parametrize("codec,bom", ENCODINGS)
def test_byte_offsets_and_lines_point_at_the_exact_text(codec: str, bom: bytes) -> None:
    doc = "# Tîtle\r\n\r\nUnicode ✓ text here, with émoji 🎉.\r\n\r\n## Next\r\n\r\n" + "\r\n".join(
        paragraph("wörd", 9) for _ in range(12)
    )
    data = bom + doc.encode(codec)
    lines = doc.split("\n")
    chunks = chunk_document(doc, "markdown", TINY, codec=codec, bom=len(bom))
    assert len(chunks) > 3
    for chunk in chunks:
        assert data[chunk.start_byte : chunk.end_byte].decode(codec) == chunk.text
        assert chunk.text in "\n".join(lines[chunk.start_line - 1 : chunk.end_line])


def test_every_chunk_fits_the_budget_even_for_huge_blocks_and_lines() -> None:
    one_block = "\n".join(paragraph("line", 10) for _ in range(30))  # no blank line at all
    one_line = " ".join(f"w{i}" for i in range(500))
    for doc in (one_block, one_line):
        chunks = chunk_document(doc, "text", TINY)
        assert len(chunks) > 3
        assert all(c.tokens <= TINY.max_tokens for c in chunks)
        words = set(doc.split())
        assert set(" ".join(c.text for c in chunks).split()) == words  # nothing lost


def test_consecutive_chunks_of_a_section_overlap_by_a_few_lines() -> None:
    doc = "\n".join(f"Line {i} says something short." for i in range(40))
    chunks = chunk_document(doc, "text", TINY)
    for before, after in itertools.pairwise(chunks):
        assert after.start_line <= before.end_line  # shared lines
        assert after.start_line > before.start_line  # but always progress


def test_empty_and_blank_documents_have_no_chunks() -> None:
    assert chunk_document("", "markdown", TINY) == []
    assert chunk_document("\n\n   \n", "text", TINY) == []


def test_budget_follows_pooling_and_prompt_length() -> None:
    last = ChunkSettings.for_encoder("last", 512)
    mean = ChunkSettings.for_encoder("mean", 512)
    short = ChunkSettings.for_encoder("mean", 128)
    assert last.max_tokens < mean.max_tokens
    assert short.max_tokens <= 128 - 64  # room left for the template and heading path
    with pytest.raises(ConfigError, match="overlap"):
        ChunkSettings(max_tokens=40, overlap_tokens=40)


def test_helpers() -> None:
    assert detect_format("README.MD") == "markdown"
    assert detect_format("guide.rst") == "rst"
    assert detect_format("Makefile") == "text"
    assert approx_tokens("internationalization is hard!") == 5 + 1 + 1 + 1
    assert embedding_text("A > B", "body") == "A > B\n\nbody"
    assert embedding_text("", "body") == "body"


def test_a_word_longer_than_the_budget_is_cut_within_it() -> None:
    """A data URI or a hash is one 'word' of thousands of characters."""
    blob = "iVBORw0KGgo" * 400  # 4400 word characters, about 1100 tokens
    doc = f"An image: data:image/png;base64,{blob} and a caption after it."
    data = doc.encode()
    chunks = chunk_document(doc, "markdown", TINY)
    assert all(c.tokens <= TINY.max_tokens for c in chunks), [c.tokens for c in chunks]
    assert "".join(c.text for c in chunks).replace(" ", "") == doc.replace(" ", "")
    for chunk in chunks:
        assert data[chunk.start_byte : chunk.end_byte].decode() == chunk.text


def test_old_mac_line_endings_are_line_breaks() -> None:
    doc = "\r".join(f"Line {i} says something short." for i in range(60))
    lines = doc.split("\r")
    chunks = chunk_document(doc, "text", TINY)
    assert len(chunks) > 3 and chunks[-1].start_line > 50
    for chunk in chunks:
        assert chunk.text in "\r".join(lines[chunk.start_line - 1 : chunk.end_line])
        assert doc.encode()[chunk.start_byte : chunk.end_byte].decode() == chunk.text


def test_a_setext_underline_makes_only_the_line_above_a_heading() -> None:
    """Text just above a title keeps its place in the chunk text; the title stays short."""
    doc = "\n".join(
        ["Some opening words", "that run on.", "Title", "=====", "", paragraph("body", 40)]
    )
    chunks = chunk_document(doc, "markdown", TINY)
    assert chunks[0].heading == () and "that run on." in chunks[0].text
    assert {c.heading for c in chunks[1:]} == {("Title",)}


def test_text_without_spaces_counts_a_token_per_character() -> None:
    """Chinese, Japanese, Korean and Thai: a BPE spends about a token per character, so a
    chunk of such text must not be four times the budget (and cut by the model's max length)."""
    assert approx_tokens("漢字かな한국어ไทย") == 10
    assert approx_tokens("abc漢字") == 3  # a Latin word beside ideographs is a word of its own
    sentence = "自然言語処理は人間の言葉をコンピュータで扱う技術です。"
    doc = "\n".join(sentence for _ in range(40))  # one paragraph, 1,080 characters
    chunks = chunk_document(doc, "text", TINY)
    assert all(len(c.text.replace("\n", "")) <= TINY.max_tokens for c in chunks)
    assert len(chunks) >= len(doc) // TINY.max_tokens
