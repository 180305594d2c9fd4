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
            stderr.print(Text(f"tpsearch: {error}", style="red"), soft_wrap=True)
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


# Model options shared by every command that embeds text. Each defaults to None ("not given"),
# so that settings stored in a collection, or the defaults, apply unless a flag or env var says.
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", envvar="TPSEARCH_MODEL", help="Hub id or local model directory."),
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(envvar="TPSEARCH_PRECISION", help="4bit (default), 8bit, bf16, fp16 or fp32."),
]
DeviceOpt = Annotated[
    str | None, typer.Option(envvar="TPSEARCH_DEVICE", help="auto (default), cpu, cuda, cuda:1.")
]
TemplateOpt = Annotated[
    str | None,
    typer.Option(help="prompteol, pcot, knowledge, or your own text with {text} and <PST>."),
]
TpOpt = Annotated[
    bool | None,
    typer.Option("--tp/--no-tp", help="Token Prepending on, or the plain prompt baseline."),
]
TpStartOpt = Annotated[int | None, typer.Option(help="First 0-based layer fed a <PST> copy.")]
TpEndOpt = Annotated[int | None, typer.Option(help="One past the last layer fed a copy.")]
ExitOpt = Annotated[
    int | None,
    typer.Option("--exit-layer", help="hidden_states index of the embedding (-1: final norm)."),
]
PoolingOpt = Annotated[str | None, typer.Option(help="last (the paper) or mean over the text.")]
PstInitOpt = Annotated[
    str | None, typer.Option(help="<PST> input vector: zeros, mean, random or token:<text>.")
]
MaxLengthOpt = Annotated[int | None, typer.Option(help="Max tokens per prompt (longer: cut).")]
TrustCodeOpt = Annotated[
    bool | None,
    typer.Option("--trust-remote-code", help="Allow code shipped with a hub model to run."),
]


def encoder_overrides(
    model: str | None = None,
    precision: str | None = None,
    device: str | None = None,
    template: str | None = None,
    tp: bool | None = None,
    tp_start: int | None = None,
    tp_end: int | None = None,
    exit_layer: int | None = None,
    pooling: str | None = None,
    pst_init: str | None = None,
    max_length: int | None = None,
    trust_remote_code: bool | None = None,
) -> dict[str, Any]:
    """The model options a user gave, for `EncoderSettings.with_overrides`."""
    return {k: v for k, v in locals().items() if v is not None}


def default_config_dir() -> Path:
    """Where tpsearch keeps per-user state such as calibrations (TPSEARCH_HOME overrides)."""
    return Path(typer.get_app_dir("tpsearch"))


def main() -> None:
    app()
