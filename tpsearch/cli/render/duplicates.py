"""How dedupe results look: Rich renderables for people, plain dicts for `--json`.

Functions return renderables instead of printing, so the CLI decides where they go (results
on stdout) and tests can render them into a recording console. Items carry the paths the
collection stores (relative to its root); `show` turns one into the path to print, e.g. relative
to the folder the command runs in. Only the output changes: keepers and groups do not.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.filesize import decimal
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tpsearch.analysis.duplicates import DedupeReport, DuplicateGroup, DuplicateMember
from tpsearch.analysis.pairs import normalise_whitespace
from tpsearch.cli.render.items import ShowPath, as_stored, item_dict, location

Level = Literal["file", "chunk"]


_KIND_TITLES = {
    "exact": "exact copies",
    "lexical": "near-duplicates (same words)",
    "semantic": "near-duplicates (same meaning)",
}
_KIND_STYLES = {"exact": "bold red", "lexical": "bold yellow", "semantic": "bold magenta"}


def _noun(level: Level, count: int = 2) -> str:
    word = "file" if level == "file" else "passage"
    return word if count == 1 else f"{word}s"


def duplicates_renderable(
    report: DedupeReport,
    level: Level = "file",
    preview_lines: int = 6,
    show: ShowPath = as_stored,
) -> RenderableType:
    """One panel per group, largest first, then a summary line and notes."""
    parts: list[RenderableType] = [
        _group_panel(number, group, level, preview_lines, show)
        for number, group in enumerate(report.groups, 1)
    ]
    parts.append(_dedupe_summary(report, level))
    parts.extend(Text(note, style="dim") for note in _dedupe_notes(report, level))
    return Group(*parts)


def _group_panel(
    number: int, group: DuplicateGroup, level: Level, preview_lines: int, show: ShowPath
) -> Panel:
    title = Text.assemble(
        (f"{number} ", "bold"),
        (_KIND_TITLES[group.kind], _KIND_STYLES[group.kind]),
        f" · {len(group.members)} {_noun(level, len(group.members))}",
        f" · {decimal(group.saveable_bytes)} to save",
    )
    if group.kind == "exact" and not group.byte_identical:
        title.append(" · whitespace differs", style="dim")
    body: list[RenderableType] = [
        _MemberRows(group, show),
        Text(f"suggested: {group.keeper_reason}", style="green"),
    ]
    if group.kind != "exact":
        body.extend(_previews(group, preview_lines, show))
    return Panel(Group(*body), title=title, title_align="left", box=box.ROUNDED)


_MAX_PREVIEWS = 3  # per group: a big group of near-copies needs a sample of its changes, not all


def _previews(group: DuplicateGroup, preview_lines: int, show: ShowPath) -> list[RenderableType]:
    """Word diffs against the keeper, once per distinct text."""
    shown: set[str] = {normalise_whitespace(group.keeper.text)}
    parts: list[RenderableType] = []
    differing = 0
    for member in group.duplicates:
        text = normalise_whitespace(member.item.text)
        if text in shown:
            continue
        shown.add(text)
        differing += 1
        if differing <= _MAX_PREVIEWS:
            where = location(member.item, show)
            parts.append(Text.assemble("\n", (where, "bold"), " vs keeper:"))
            parts.append(diff_preview(group.keeper.text, member.item.text, preview_lines))
    if differing > _MAX_PREVIEWS:
        more = differing - _MAX_PREVIEWS
        parts.append(Text(f"\n… {more} more different version{'s' if more > 1 else ''}", "dim"))
    return parts


class _MemberRows:
    """A group's members, one row each: keep/dup, path, size, modified, link. The path is the
    one column that may wrap; on a terminal too narrow for whole paths, the time of day goes
    first, then the size (both are in --json)."""

    def __init__(self, group: DuplicateGroup, show: ShowPath) -> None:
        depth = {group.keeper.id: 0}
        for member in group.duplicates:  # members come after the member they link to
            assert member.linked_to is not None, "only the keeper has no link"
            depth[member.item.id] = depth[member.linked_to] + 1
        self.rows = [_member_cells(m, group, depth[m.item.id], show) for m in group.members]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        widths = [max(cell_len(str(row[n])) for row in self.rows) for n in range(5)]
        gaps = 2 * 4
        fits = options.max_width >= sum(widths) + gaps
        short_time = not fits and options.max_width >= sum(widths) + gaps - 6
        shown = (0, 1, 2, 3, 4) if fits or short_time else (0, 1, 3, 4)
        table = Table.grid(padding=(0, 2))
        for n in shown:
            table.add_column(
                no_wrap=n != 1,  # only the path wraps, when it must
                overflow="fold" if n == 1 else "ellipsis",
                justify="right" if n == 2 else "left",
                style="dim" if n == 3 else "",
            )
        for row in self.rows:
            cells = [row[n] for n in shown]
            if not fits:
                cells[shown.index(3)] = str(row[3])[:10]  # the date without the time
            table.add_row(*cells)
        yield table


def _member_cells(
    member: DuplicateMember, group: DuplicateGroup, depth: int, show: ShowPath
) -> tuple[Text, Text, str, str, Text]:
    item = member.item
    where = location(item, show)
    size = decimal(item.size)
    modified = datetime.fromtimestamp(item.mtime).strftime("%Y-%m-%d %H:%M")
    if member.linked_to is None:
        keep = Text("keep", style="bold green")
        return (keep, Text(where, style="bold"), size, modified, Text(""))
    return (
        Text("dup", style="dim"),
        Text.assemble((_indent(depth), "dim"), where),
        size,
        modified,
        _link_text(member, group),
    )


_MAX_INDENT = 4  # a long chain of links is drawn at most this deep: paths stay readable


def _indent(depth: int) -> str:
    """'' for the keeper and members linked to it, '└ ' under a member linked through another."""
    return "  " * (min(depth, _MAX_INDENT) - 2) + "└ " if depth > 1 else ""


def _link_text(member: DuplicateMember, group: DuplicateGroup) -> Text:
    """How a member is linked to the row above it at one level less indented, in a few words:
    'identical', 'whitespace differs', '0.93 word overlap' (Jaccard), '0.970 cosine'."""
    assert member.linked_to is not None, "the keeper has no link"
    similarity = member.similarity or 0.0
    if member.link_kind == "exact":
        linked = next(m.item for m in group.members if m.item.id == member.linked_to)
        same = linked.identity(whitespace=False) == member.item.identity(whitespace=False)
        words = "identical" if same else "whitespace differs"  # as the group's title says
    elif member.link_kind == "lexical":
        words = f"{similarity:.2f} word overlap"
    else:
        words = f"{similarity:.3f} cosine"
    return Text(words)


def diff_preview(old: str, new: str, max_hunks: int = 6, context: int = 4) -> Text:
    """Where two texts differ, word by word: `… context -removed- +added+ context …`.

    Lines are matched first (cheap, and it keeps unrelated edits apart); inside each changed
    block the words are compared, so one changed word in a long paragraph shows as that
    word with a few words around it rather than two near-identical screen-wide lines.
    Differences of whitespace alone are not shown.
    """
    old_lines, new_lines = old.splitlines(), new.splitlines()
    hunks = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(
        None, old_lines, new_lines, autojunk=False
    ).get_opcodes():
        removed = " ".join(old_lines[i1:i2]).split()
        added = " ".join(new_lines[j1:j2]).split()
        if tag != "equal" and removed != added:
            hunks.append(_word_diff(removed, added, context))
    preview = Text()
    for hunk in hunks[:max_hunks]:
        preview.append("  ")
        preview.append(hunk)
        preview.append("\n")
    if len(hunks) > max_hunks:
        preview.append(f"  … {len(hunks) - max_hunks} more changes\n", style="dim")
    preview.rstrip()
    return preview


def _word_diff(removed: list[str], added: list[str], context: int) -> Text:
    line = Text()
    opcodes = difflib.SequenceMatcher(None, removed, added, autojunk=False).get_opcodes()
    for n, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            words = removed[i1:i2]
            first, last = n == 0, n == len(opcodes) - 1
            keep_head = [] if first else words[:context]
            keep_tail = [] if last else words[-context:]
            if len(words) > len(keep_head) + len(keep_tail):
                shown = [*keep_head, "…", *keep_tail]
            else:
                shown = words
            line.append(" ".join(shown) + " ", style="dim")
            continue
        if i2 > i1:
            line.append("-" + _clipped(removed[i1:i2]) + "-", style="bold red")
            line.append(" ")
        if j2 > j1:
            line.append("+" + _clipped(added[j1:j2]) + "+", style="bold green")
            line.append(" ")
    line.rstrip()
    return line


def _clipped(words: list[str], limit: int = 16) -> str:
    """A changed run of words, its middle elided when long (a deleted page is one hunk)."""
    if len(words) <= limit:
        return " ".join(words)
    return " ".join([*words[: limit - 4], f"… ({len(words)} words) …", *words[-3:]])


def _dedupe_summary(report: DedupeReport, level: Level) -> Text:
    if not report.groups:
        compared = report.compared  # semantic alone compares only what has a vector
        compared -= report.unembedded if report.settings.method == "semantic" else 0
        return Text(f"No duplicates among {compared} {_noun(level, compared)}.")
    by_kind = ", ".join(f"{n} {kind}" for kind, n in report.count_by_kind().items() if n)
    groups = len(report.groups)
    duplicates = report.duplicate_count
    text = Text.assemble(
        (f"{groups} group{'s' if groups != 1 else ''}", "bold"),
        f" ({by_kind}) · ",
        (f"{duplicates} duplicate {_noun(level, duplicates)}", "bold"),
    )
    if level == "chunk":
        files = len({m.item.path for g in report.groups for m in g.duplicates})
        text.append(f" in {files} file{'s' if files != 1 else ''}")
    text.append(" · ")
    text.append(f"{decimal(report.saveable_bytes)} could be saved", style="bold")
    text.append(f" by keeping one {_noun(level, 1)} per group")
    return text


def _dedupe_notes(report: DedupeReport, level: Level) -> list[str]:
    notes = []
    if report.too_short:
        notes.append(
            f"{report.too_short} {_noun(level, report.too_short)} under "
            f"{report.settings.min_words} words were not compared."
        )
    if report.unembedded:
        notes.append(
            f"{report.unembedded} {_noun(level, report.unembedded)} not embedded yet were left "
            "out of the semantic comparison: run `tpsearch index` to embed them."
        )
    notes.append("Nothing was changed; --json lists these groups for scripts to act on.")
    return notes


def duplicates_as_dict(report: DedupeReport, show: ShowPath = as_stored) -> dict[str, Any]:
    """The dedupe report as JSON-ready data (`--json`)."""
    return {
        "settings": asdict(report.settings),
        "summary": {
            "groups": len(report.groups),
            "by_kind": report.count_by_kind(),
            "duplicates": report.duplicate_count,
            "saveable_bytes": report.saveable_bytes,
            "compared": report.compared,
            "too_short": report.too_short,
            "unembedded": report.unembedded,
        },
        "groups": [
            {
                "kind": group.kind,
                "byte_identical": group.byte_identical,
                "saveable_bytes": group.saveable_bytes,
                "keeper_reason": group.keeper_reason,
                "members": [
                    {
                        **item_dict(m.item, show),
                        "keeper": m.linked_to is None,
                        "linked_to": m.linked_to,
                        "similarity": m.similarity,
                        "link_kind": m.link_kind,
                    }
                    for m in group.members
                ],
            }
            for group in report.groups
        ],
    }
