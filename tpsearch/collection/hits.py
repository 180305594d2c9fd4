"""What a query answers: ranked hits. No numpy, SQLite or model here, so that a client of the
warm server (`tpsearch query` while `tpsearch serve` runs) can rebuild the answer cheaply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

Mode = Literal["hybrid", "semantic", "lexical"]
MODES: tuple[str, ...] = get_args(Mode)


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    chunk_id: int
    path: str  # relative to the collection root
    start_line: int
    end_line: int
    heading: str
    snippet: str  # around the query terms: a line per paragraph, heading or line of code
    highlights: tuple[tuple[int, int], ...]  # [start, end) of query terms in `snippet`
    title: str = ""  # the document's title (a Title: field or its first heading), if any

    def to_dict(self, path: str | None = None) -> dict[str, Any]:
        """The JSON record; `path` replaces the root-relative path (e.g. relative to cwd)."""
        return {
            "path": path if path is not None else self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "score": round(self.score, 6),
            "snippet": self.snippet,
            "chunk_id": self.chunk_id,
            "heading": self.heading,
            "title": self.title,
        }


@dataclass(frozen=True)
class QueryResult:
    text: str
    mode: Mode  # as asked
    used: Mode  # what ran: "lexical" when vectors could not be used
    hits: list[Hit]
    notices: list[str]  # things the user should know (shown on stderr)
