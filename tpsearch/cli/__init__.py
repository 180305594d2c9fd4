"""The `tpsearch` command: parse options, call one library function, render the result.

No file walking, SQL or torch in here. `app.py` holds the Typer app and its one error
boundary; each other module registers the commands of one area on it.
"""

from tpsearch.cli import (  # noqa: F401  (they register commands)
    analysis,
    collections,
    engine,
    live,
    models,
    retrieval,
    server,
)
from tpsearch.cli.app import app, main

__all__ = ["app", "main"]
