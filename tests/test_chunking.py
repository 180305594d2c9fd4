"""Chunks follow the document's structure, fit the budget, and point back at exact bytes."""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection
from pathlib import Path

import pytest

from tpsearch.collection.chunking import (
    Chunk,
    ChunkSettings,
    approx_tokens,
    chunk_document,
    detect_format,
    embedding_text,
)
from tpsearch.collection.documents import Unreadable, read_document
from tpsearch.errors import ConfigError

TINY = ChunkSettings(max_tokens=40, overlap_tokens=10)
SMALL = ChunkSettings(max_tokens=80, overlap_tokens=10)
REPO = Path(__file__).resolve().parent.parent
ATX_LINE = re.compile(r"^ {0,3}#{1,6}(?:\s|$)")
RULE_LINE = re.compile(r"^\s*([^\w\s])\1{2,}\s*$")


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


# --- chunks that carry meaning ----------------------------------------------------------------


def only_titles(chunk: Chunk, titles: Collection[str] = ()) -> bool:
    """Whether a chunk's text is titles alone: `#` headings, adornment lines, known titles."""
    lines = [line.strip() for line in chunk.text.splitlines() if line.strip()]
    return all(ATX_LINE.match(line) or RULE_LINE.match(line) or line in titles for line in lines)


GUIDE_MD = """\
# Request Files { #request-files }

You can define files to be uploaded by the client using `File`.

## Install the package { #install }

### With pip

To receive uploaded files, first install `python-multipart`, because uploaded files are sent
as "form data". Make sure you create a virtual environment, activate it, and then install it,
for example:

```console
$ pip install python-multipart

---> 100%
```

## Define `File` parameters { #define-file-parameters }

Create file parameters the same way you would for `Body` or `Form`. The files will be uploaded
as "form data". If you declare the type of your path operation function parameter as `bytes`,
**FastAPI** will read the file for you and you will receive the contents as `bytes`. Keep in
mind that this means that the whole contents will be stored in memory.

### Optional file upload

## Recap

Use `File` to declare files to be uploaded as input parameters (as form data).
"""

GUIDE_RST = """\
.. _tut-files:

**************************
Reading and Writing Files
**************************

:func:`open` returns a :term:`file object`, and is most commonly used with two
positional arguments and one keyword argument: ``open(filename, mode, encoding=None)``.

Methods of File Objects
=======================

Reading a file
--------------

To read a file's contents, call ``f.read(size)``, which reads some quantity of data and
returns it as a string (in text mode) or bytes object (in binary mode). *size* is an
optional numeric argument.

It is good practice to use the :keyword:`with` keyword when dealing with file objects::

    >>> with open('workfile', encoding="utf-8") as f:
    ...     read_data = f.read()

    >>> f.closed
    True

Writing
-------

``f.write(string)`` writes the contents of *string* to the file, returning the number of
characters written.
"""
RST_TITLES = {"Reading and Writing Files", "Methods of File Objects", "Reading a file", "Writing"}


@pytest.mark.parametrize("settings", [TINY, SMALL], ids=["40", "80"])
def test_no_chunk_is_a_title_alone(settings: ChunkSettings) -> None:
    """Titles right above a subsection, titles of empty sections, titles whose first paragraph
    fills the budget: each goes with text (or only in the heading path), never alone."""
    md = chunk_document(GUIDE_MD, "markdown", settings)
    rst = chunk_document(GUIDE_RST, "rst", settings)
    assert [c.text for c in md if only_titles(c)] == []
    assert [c.text for c in rst if only_titles(c, RST_TITLES)] == []
    # nothing is lost but titles: every paragraph and code line is in some chunk
    for doc, chunks in ((GUIDE_MD, md), (GUIDE_RST, rst)):
        covered = {n for c in chunks for n in range(c.start_line, c.end_line + 1)}
        for n, line in enumerate(doc.splitlines(), 1):
            if line.strip() and not only_titles(Chunk(line, 0, 0, 0, 0, (), 0), RST_TITLES):
                assert n in covered or line.startswith(".. _"), line


def test_a_title_goes_with_the_first_text_under_it() -> None:
    chunks = chunk_document(GUIDE_MD, "markdown", SMALL)
    # "Install the package" has no text of its own: it opens its subsection's first chunk
    install = next(c for c in chunks if "## Install the package" in c.text)
    assert "first install `python-multipart`" in install.text
    assert install.heading == ("Request Files", "Install the package", "With pip")
    # an empty section's title goes with the next section's text
    recap = next(c for c in chunks if "### Optional file upload" in c.text)
    assert "Use `File` to declare files" in recap.text
    # the rst title with over- and underline (and the label above it) opens the chunk of its
    # first paragraph
    first = chunk_document(GUIDE_RST, "rst", SMALL)[0]
    stars = "*" * 26
    assert first.text.startswith(f".. _tut-files:\n\n{stars}\nReading and Writing Files\n{stars}")
    assert ":func:`open` returns" in first.text


def test_sections_side_by_side_with_nothing_above_them() -> None:
    """Two top-level titles and no text before the first: both sections are chunked."""
    doc = "\n\n".join(
        f"{title}\n{'-' * len(title)}\n\n{paragraph(word, 15)}"
        for title, word in (("Authorizing a group", "group"), ("Authorizing a range", "range"))
    )
    chunks = chunk_document(doc, "rst", TINY)
    assert [c.heading for c in chunks] == [("Authorizing a group",), ("Authorizing a range",)]


def test_a_long_underline_does_not_shrink_the_text_budget() -> None:
    """An underline costs what a BPE spends on it (a token per 16 marks), not one per mark:
    the 72 "=" that used to cost 72 of 40 tokens leave room for as much text as "=====" does."""
    body = "\n\n".join(paragraph(word, 7) for word in ("alpha", "beta", "gamma", "delta"))
    for fmt in ("markdown", "rst"):
        short = chunk_document(f"Setup\n=====\n\n{body}\n", fmt, TINY)
        long = chunk_document(f"Setup\n{'=' * 72}\n\n{body}\n", fmt, TINY)
        assert [c.text.replace("=" * 72, "=====") for c in long] == [c.text for c in short]
        assert long[0].text.startswith("Setup\n====") and "beta6." in long[0].text
    assert approx_tokens("-" * 70) <= 5  # a BPE spends about 5 tokens on it, not 70
    assert approx_tokens("| --- | :---: | ---: |") <= 2
    assert approx_tokens("+--------+--------+") <= 2
    assert approx_tokens("| name | price |") == 6  # table rows are text


def test_a_code_block_keeps_its_line_breaks_and_its_introduction() -> None:
    code = "```console\n$ pip install python-multipart\n\n$ fastapi dev main.py\n```"
    doc = f"# Files\n\n{paragraph('context', 14)}\n\nInstall it with:\n\n{code}\n"
    chunks = chunk_document(doc, "markdown", TINY)
    assert approx_tokens(f"{paragraph('context', 14)}\nInstall it with:\n{code}") > 40
    assert any("Install it with:" in c.text and code in c.text for c in chunks)
    rst = chunk_document(GUIDE_RST, "rst", SMALL)
    literal = GUIDE_RST[GUIDE_RST.index("    >>> with") : GUIDE_RST.index("    True") + 8]
    holder = next(c for c in rst if literal in c.text)  # blank line inside and all
    assert "dealing with file objects::" in holder.text


def test_a_small_last_piece_takes_text_from_the_chunk_before() -> None:
    doc = f"{paragraph('first', 12)}\n\n{paragraph('second', 6)}\n\nThat is all."
    chunks = chunk_document(doc, "text", TINY)
    assert [c.text.split()[0] for c in chunks] == ["first0", "second0"]  # not "That"
    assert chunks[-1].text.endswith("That is all.")


def test_a_long_line_is_cut_into_even_pieces() -> None:
    doc = " ".join(f"w{i}" for i in range(44))  # 44 tokens: two of 22, not 40 and 4
    assert [c.tokens for c in chunk_document(doc, "text", TINY)] == [22, 22]


CORPORA = [REPO / "tests" / "fixtures" / "fastapi_docs", REPO / "data" / "fastapi-docs"]


@pytest.mark.parametrize("corpus", CORPORA, ids=lambda path: path.name)
def test_real_documentation_has_no_bare_titles(corpus: Path) -> None:
    """The FastAPI docs at the index's default budget: no chunk is a heading alone, hardly any
    is a few tokens, each fits and points at its exact bytes."""
    if not corpus.is_dir():
        pytest.skip(f"{corpus} is not there")
    settings = ChunkSettings.for_encoder("last", 512)
    chunks, bare, few = 0, [], 0
    for path in sorted(corpus.rglob("*.md")):
        data = path.read_bytes()
        doc = read_document(data)
        assert not isinstance(doc, Unreadable)
        for chunk in chunk_document(doc.text, "markdown", settings, doc.encoding, doc.bom):
            assert data[chunk.start_byte : chunk.end_byte].decode(doc.encoding) == chunk.text
            assert chunk.tokens <= settings.max_tokens
            chunks += 1
            in_code = data[: chunk.start_byte].count(b"```") % 2 == 1  # `# x` is a comment
            bare += (
                [f"{path.name}:{chunk.start_line}"] if only_titles(chunk) and not in_code else []
            )
            few += chunk.tokens < settings.max_tokens // 8
    assert chunks > 50
    assert bare == []
    assert few <= chunks // 100
