"""How `tpsearch models` looks: a table of packaged models, the cache, install commands."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tpsearch.engine.catalog import ModelCatalog


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.0f} MB" if size else ""


def render_catalog(console: Console, catalog: ModelCatalog, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(catalog.to_dict()))
        return
    table = Table(title="Packaged models (--model NAME)", title_justify="left", box=None)
    for column in ("name", "installed", "size", "layers x hidden", "converted"):
        table.add_column(column, overflow="fold")
    for model in catalog.packaged:
        installed = (
            Text(f"yes ({model.version})", style="green")
            if model.installed
            else Text("no", style="dim")
        )
        shape = f"{model.layers} x {model.hidden}" if model.layers and model.hidden else ""
        table.add_row(
            Text(model.name, style="bold"),
            installed,
            megabytes(model.size_bytes),
            shape,
            "yes" if model.converted else "",
        )
    console.print(table)
    for model in catalog.packaged:
        line = Text(f"  {model.name}: ", style="bold")
        line.append(f"{model.title}, PyPI package {model.package}; licence {model.licence}; ")
        line.append(model.maintainer)
        console.print(line, highlight=False, soft_wrap=True)
    missing = [model for model in catalog.packaged if not model.installed]
    if missing:
        console.print()
        console.print("To install (or: tpsearch models install NAME):", highlight=False)
        for model in missing:
            console.print(Text(f"  {model.install}", style="cyan"), highlight=False)
            console.print(Text(f"    {model.note}", style="dim"), highlight=False, soft_wrap=True)
    console.print()
    if not catalog.cached:
        where = f" ({catalog.cache})" if catalog.cache else ""
        console.print(
            f"The model cache{where} is empty.", highlight=False, soft_wrap=True, markup=False
        )
        return
    console.print(
        f"In the model cache ({catalog.cache}):", highlight=False, soft_wrap=True, markup=False
    )
    cache = Table(box=None)
    for column in ("kind", "model", "size", "detail", "folder"):
        cache.add_column(column, overflow="fold")
    root = Path(catalog.cache) if catalog.cache else None
    for copy in catalog.cached:
        folder = Path(copy.path)
        shown = folder.relative_to(root) if root and folder.is_relative_to(root) else folder
        cache.add_row(copy.kind, copy.model, megabytes(copy.size_bytes), copy.detail, str(shown))
    console.print(cache)
