"""Templates and settings resolution: pure functions, no model."""

from __future__ import annotations

import pytest

from tpsearch.engine.settings import (
    EncoderSettings,
    LayerPreset,
    normalise_exit,
    published_preset,
    resolve_tp_settings,
)
from tpsearch.engine.templates import BUILTIN_TEMPLATES, Template
from tpsearch.errors import ConfigError


def test_builtin_templates_are_the_research_strings() -> None:
    eol = Template.resolve("prompteol")
    assert eol.text == 'This sentence : <PST> "{text}" means in one word:"'
    assert Template.resolve("pcot").text == (
        'After thinking step by step , this sentence : <PST> "{text}" means in one word:"'
    )
    assert Template.resolve("knowledge").text == (
        "The essence of a sentence is often captured by its main subjects and actions, while "
        "descriptive terms provide additional but less central details. With this in mind , "
        'this sentence : <PST> "{text}" means in one word:"'
    )
    assert Template.resolve("Pretended-CoT").name == "pcot"
    assert eol.baseline() == ('This sentence : "{text}" means in one word:"', 16)


def test_fill_replaces_double_quotes_strips_and_locates_text_and_slot() -> None:
    filled = Template.resolve("prompteol").fill('  He said "hi"  ', with_pst=True)
    assert filled.prompt == 'This sentence : "  He said \'hi\'  " means in one word:"'
    assert filled.prompt[filled.text_start : filled.text_end] == "  He said 'hi'  "
    assert filled.pst_char == 16 and filled.prompt[filled.pst_char] == '"'
    custom = Template.resolve("  {text} <PST> means:  ").fill("cats", with_pst=True)
    assert custom.prompt == "cats means:"
    assert custom.prompt[custom.text_start : custom.text_end] == "cats"
    assert custom.pst_char == 5 and custom.head_end == 0


def test_a_space_goes_with_the_slot_only_when_there_is_one_on_each_side() -> None:
    assert Template.resolve("Sentence: <PST>{text}").baseline() == ("Sentence: {text}", 10)
    assert Template.resolve("Sentence:<PST> {text}").baseline() == ("Sentence: {text}", 9)
    assert Template.resolve("Sentence: <PST> {text}").baseline() == ("Sentence: {text}", 10)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no placeholder here", "choose one of"),
        ("{text} and {text} <PST>", "exactly once"),
        ("<PST> <PST> {text}", "at most once"),
        ("{text} <PST>", "must not end the template"),
    ],
)
def test_bad_templates_are_explained(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Template.resolve(spec)


@pytest.mark.parametrize(
    ("model_id", "layers", "expected"),
    [  # tp-semantics.md's table: template, tp_start, tp_end, exit
        ("meta-llama/Llama-2-7b-hf", 32, ("prompteol", 1, 7, 27)),
        ("meta-llama/Llama-2-13b-hf", 40, ("pcot", 1, 7, -2)),
        ("meta-llama/Meta-Llama-3-8B", 32, ("pcot", 1, 3, -2)),
        ("Qwen/Qwen2-7B", 28, ("pcot", 1, 6, -2)),
        ("google/gemma-2-9b", 42, ("pcot", 1, 6, -2)),
        ("mistralai/Mistral-7B-Instruct-v0.3", 32, ("prompteol", 1, 7, -2)),
    ],
)
def test_every_published_preset(model_id: str, layers: int, expected: tuple) -> None:  # type: ignore[type-arg]
    preset = published_preset(model_id, layers)
    assert preset is not None, model_id
    assert (preset.template, preset.tp_start, preset.tp_end, preset.exit_layer) == expected


def test_published_presets_match_model_and_depth() -> None:
    preset = published_preset("meta-llama/Llama-2-7b-hf", 32)
    assert preset is not None and (preset.template, preset.tp_start, preset.tp_end) == (
        "prompteol",
        1,
        7,
    )
    assert published_preset("meta-llama/Llama-2-7b-hf", 40) is None
    resolved = resolve_tp_settings(EncoderSettings(), "Qwen/Qwen2-7B-Instruct", 28)
    assert (resolved.template.name, resolved.tp_start, resolved.tp_end) == ("pcot", 1, 6)
    assert resolved.exit_layer == 27 and resolved.source == "published (Qwen2-7B)"


def test_other_models_get_the_plain_prompt_at_exit_minus_two() -> None:
    # Measured on both real packaged models: no TP setting beat the plain prompt, and the old
    # depth-scaled TP default lost to it; a model nobody measured is never given less.
    resolved = resolve_tp_settings(EncoderSettings(), "Qwen/Qwen2.5-0.5B-Instruct", 24)
    assert not resolved.tp and resolved.copies == 0 and resolved.exit_layer == 23
    assert resolved.template.name == "prompteol"
    assert "calibrate" in resolved.source
    flags = EncoderSettings(tp_start=1, tp_end=5)  # TP layers given: TP runs
    assert resolve_tp_settings(flags, "Qwen/Qwen2.5-0.5B-Instruct", 24).copies == 4


def test_packaged_models_get_their_measured_settings() -> None:
    for model_id, layers, exit_layer in (
        ("smollm2-135m", 30, 28),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", 30, 28),
        ("gemma3-270m", 18, 18),
        ("google/gemma-3-270m", 18, 18),
    ):
        resolved = resolve_tp_settings(EncoderSettings(), model_id, layers)
        assert (resolved.tp, resolved.exit_layer) == (False, exit_layer), model_id
        assert resolved.source.startswith("measured for"), resolved.source
    assert EncoderSettings().model == "smollm2-135m"


def test_precedence_flags_over_calibration_over_presets() -> None:
    calibrated = LayerPreset("calibrated on dev", 32, "knowledge", 1, 4, 30)
    settings = EncoderSettings(exit_layer=-3)
    resolved = resolve_tp_settings(settings, "meta-llama/Llama-2-7b-hf", 32, calibrated)
    assert (resolved.template.name, resolved.tp_end, resolved.exit_layer) == ("knowledge", 4, 30)
    assert resolved.source == "calibrated on dev + flags (exit_layer)"
    other_template = EncoderSettings(template="pcot")
    resolved = resolve_tp_settings(other_template, "meta-llama/Llama-2-7b-hf", 32, calibrated)
    assert resolved.source.startswith("published (LLaMA-2-7B)"), "calibration is per template"


def test_exit_layer_uses_hidden_states_indexing() -> None:
    assert normalise_exit(-1, 24) == 24 and normalise_exit(-2, 24) == 23
    assert normalise_exit(5, 24) == 5
    for bad in (0, 25, -25):
        with pytest.raises(ConfigError, match="out of range"):
            normalise_exit(bad, 24)


def test_tp_layers_must_feed_layers_that_run() -> None:
    with pytest.raises(ConfigError, match="tp_end <= exit layer"):
        resolve_tp_settings(EncoderSettings(tp_end=10, exit_layer=8), "m", 24)
    off = resolve_tp_settings(EncoderSettings(tp=False, tp_end=10, exit_layer=8), "m", 24)
    assert off.copies == 0 and not off.tp
    no_slot = resolve_tp_settings(EncoderSettings(template="Say {text} now"), "m", 24)
    assert not no_slot.tp, "a template without <PST> is the plain prompt baseline"
    assert no_slot.source.endswith("template without <PST>: plain prompt")
    with pytest.raises(ConfigError, match="no <PST> slot"):
        resolve_tp_settings(EncoderSettings(template="Say {text} now", tp_end=3), "m", 24)


def test_shallow_models_get_valid_defaults() -> None:
    for layers in (1, 2, 3):
        resolved = resolve_tp_settings(EncoderSettings(), "m", layers)
        assert 0 <= resolved.tp_start <= resolved.tp_end <= resolved.exit_layer <= layers


def test_a_calibration_for_another_depth_is_ignored_visibly() -> None:
    stale = LayerPreset("calibrated on dev", 32, "pcot", 1, 4, 30)
    resolved = resolve_tp_settings(EncoderSettings(), "m", 24, stale)
    assert (resolved.tp, resolved.exit_layer) == (False, 23)  # the default, not the stale one
    assert resolved.source.startswith("(a calibration for 32 layers was ignored)")


def test_settings_validate_and_round_trip() -> None:
    with pytest.raises(ConfigError, match="'4bit', '8bit', 'bf16', 'fp16', 'fp32'"):
        EncoderSettings(precision="3bit")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pooling"):
        EncoderSettings(pooling="max")  # type: ignore[arg-type]
    settings = EncoderSettings(model="./m", tp_end=4, template=BUILTIN_TEMPLATES["knowledge"])
    assert EncoderSettings.from_dict(settings.to_dict()) == settings
    assert settings.with_overrides(model=None, tp_end=6).tp_end == 6
