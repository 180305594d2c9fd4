"""The `tpsearch` application: the Typer app, its one error boundary, and the entry point.

Library errors (`TpsearchError`) are caught in one place, `TpsearchGroup.invoke`, and printed
as one red line on stderr with a non-zero exit code; anything else is a bug and keeps its
traceback. Commands live in the modules beside this one, one module per area.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import traceback
import warnings
from typing import Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.exceptions import TyperException

from tpsearch import __version__
from tpsearch.cli.render.safe import SafeConsole
from tpsearch.errors import TpsearchError, TpsearchWarning


def _closed_pipe() -> None:
    """`tpsearch query ... | head`: the reader has had enough. Exit quietly, as if killed by
    SIGPIPE (141, like grep), whether Rich or Click was writing when the pipe closed."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error when Python exits
    raise SystemExit(141)


class _Console(SafeConsole):
    def on_broken_pipe(self) -> None:  # Rich's own handler exits 1, which `query` means as none
        _closed_pipe()


stdout = _Console(soft_wrap=True)
stderr = SafeConsole(stderr=True)  # file names reach it too (skips, errors)


class TpsearchGroup(TyperGroup):
    """The one error boundary: expected errors become one red line and an exit code; Ctrl-C
    exits 130; a closed pipe on stdout exits 141, quietly; anything else is a bug and keeps its
    traceback, with exit code 2 (never 1, which `query` uses for "no results")."""

    def invoke(self, ctx: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("always", TpsearchWarning)
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except TpsearchError as error:
                _error_line(str(error))
                raise SystemExit(error.exit_code) from None
            except KeyboardInterrupt:
                _error_line("interrupted")
                raise SystemExit(130) from None
            except BrokenPipeError:
                _closed_pipe()
            except (typer.Exit, typer.Abort, TyperException):
                raise  # exit codes and usage errors: Typer reports them
            except sqlite3.DatabaseError as error:  # a full disk, a damaged file, a lock
                from tpsearch.collection.db_errors import database_error

                _error_line(str(database_error(error)))
                raise SystemExit(2) from None
            except OSError as error:
                from tpsearch.collection.db_errors import os_error

                known = os_error(error)
                if known is None:
                    _unexpected()
                else:
                    _error_line(str(known))
                raise SystemExit(2) from None
            except Exception:
                _unexpected()
                raise SystemExit(2) from None


def _unexpected() -> None:
    traceback.print_exc(file=sys.stderr)
    _error_line("unexpected error, a bug in tpsearch: please report it (traceback above)")


def _error_line(message: str) -> None:
    """The problem on the first line; a second line, indented, says how to fix it."""
    shown = "\n  ".join(message.splitlines())
    stderr.print(Text(f"tpsearch: {shown}", style="red"), soft_wrap=True, highlight=False)


def _show_warning(message: Any, category: type[Warning], *_: Any, **__: Any) -> None:
    if issubclass(category, TpsearchWarning):
        stderr.print(Text(f"tpsearch: warning: {message}", style="yellow"), soft_wrap=True)
    else:
        stderr.print(Text(f"{category.__name__}: {message}", style="dim"), soft_wrap=True)


_TYPE_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH"}


def _plain_type(param: Any, ctx: Any) -> str | None:
    """What `--help` shows beside an option: a plain word for the value it takes (TEXT,
    INTEGER, PATH ...), nothing for a flag or an argument (its name says it). Typer's own
    markers (`<bool>`, `<list[str]>`, `<list[Path]>`) describe Python types, not the command."""
    if isinstance(param, TyperArgument) or getattr(param, "is_flag", False):
        return None
    if param.metavar is not None:
        return str(param.metavar)
    label = (param.display_type(ctx) or "").strip("<>")
    label = label.removeprefix("list[").removesuffix("]").lower()  # repeatable: the help says
    return _TYPE_WORDS.get(label, label.upper() or None)


TyperOption.display_type_rich = _plain_type  # type: ignore[method-assign,assignment]
TyperArgument.display_type_rich = _plain_type  # type: ignore[method-assign,assignment]


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


# Model options shared by every command that embeds text. Each defaults to None ("not given"),


def main() -> None:
    app()
