"""The `tpsearch` command: parse options, call one library function, render the result.

No file walking, SQL or torch here. Library errors (`TpsearchError`) are caught in one place,
`TpsearchGroup.invoke`, and printed as one red line on stderr with a non-zero exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from tpsearch import __version__
from tpsearch.errors import TpsearchError

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True)


class TpsearchGroup(TyperGroup):
    """The one error boundary: expected errors become one red line and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except TpsearchError as error:
            stderr.print(Text(f"tpsearch: {error}", style="red"))
            raise SystemExit(error.exit_code) from None


app = typer.Typer(
    cls=TpsearchGroup,
    help="Local semantic search with Token Prepending embeddings from a decoder LLM.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        stdout.print(f"tpsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Local semantic search with Token Prepending embeddings from a decoder LLM."""


def default_config_dir() -> Path:
    """Where tpsearch keeps per-user state such as calibrations (TPSEARCH_HOME overrides)."""
    return Path(typer.get_app_dir("tpsearch"))


def main() -> None:
    app()
