"""Prompt templates for prompt-based sentence embeddings, with the `<PST>` slot of Token Prepending.

A template holds `{text}` once and, for Token Prepending, `<PST>` once (Fu et al., 2024,
arXiv 2412.11556, section 4.2.1). The strings of the built-in templates are the research code's
exact ones. Removing `<PST>` and one space beside it gives the plain prompt baseline of the same
template, so TP on and off feed the model exactly the same tokens apart from the one slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpsearch.errors import ConfigError, choice_error

PST = "<PST>"
TEXT = "{text}"

BUILTIN_TEMPLATES: dict[str, str] = {
    "prompteol": 'This sentence : <PST> "{text}" means in one word:"',
    "pcot": 'After thinking step by step , this sentence : <PST> "{text}" means in one word:"',
    "knowledge": (
        "The essence of a sentence is often captured by its main subjects and actions, while "
        "descriptive terms provide additional but less central details. With this in mind , "
        'this sentence : <PST> "{text}" means in one word:"'
    ),
}
ALIASES = {"pretended-cot": "pcot", "pretended_cot": "pcot", "cot": "pcot", "eol": "prompteol"}


@dataclass(frozen=True)
class Filled:
    """One prompt filled with a text, and where things are in it (character offsets)."""

    prompt: str
    text_start: int  # first character of the (preprocessed) text in `prompt`
    text_end: int  # one past its last character
    pst_char: int | None  # the character the <PST> slot goes before; None without TP
    head_end: int  # end of the constant template head (where <PST> stands, or the text starts)


@dataclass(frozen=True)
class Template:
    """A prompt template: a name (builtin or "custom") and its text with `{text}` and `<PST>`."""

    name: str
    text: str

    @classmethod
    def resolve(cls, spec: str) -> Template:
        """A builtin name (prompteol, pcot, knowledge) or a literal template holding `{text}`."""
        key = ALIASES.get(spec.strip().lower(), spec.strip().lower())
        if key in BUILTIN_TEMPLATES:
            return cls(key, BUILTIN_TEMPLATES[key])
        if TEXT not in spec:
            raise choice_error(
                "template (a builtin name, or your own text holding {text})",
                spec,
                sorted(BUILTIN_TEMPLATES),
            )
        template = cls("custom", spec)
        template.validate()
        return template

    @property
    def has_pst(self) -> bool:
        return PST in self.text

    def validate(self) -> None:
        if self.text.count(TEXT) != 1:
            raise ConfigError(f"a template must hold {TEXT} exactly once: {self.text!r}")
        if self.text.count(PST) > 1:
            raise ConfigError(f"a template may hold {PST} at most once: {self.text!r}")
        if self.has_pst and not self.text.split(PST, 1)[1].strip():
            raise ConfigError(
                f"{PST} must not end the template: the token after it carries the embedding"
            )

    def baseline(self) -> tuple[str, int | None]:
        """The template without `<PST>`, and where the slot was: `a <PST> b` becomes `a b`
        (one of the two spaces goes with the slot), `a <PST>b` becomes `a b`."""
        if not self.has_pst:
            return self.text, None
        at = self.text.index(PST)
        before, after = self.text[:at], self.text[at + len(PST) :]
        if before.endswith(" ") and after.startswith(" "):
            after = after[1:]
        return before + after, len(before)

    def fill(self, text: str, *, with_pst: bool) -> Filled:
        """The prompt for `text`, as the research code builds it (`"` becomes `'`, then strip)."""
        text = text.replace('"', "'")
        base, slot = self.baseline()
        at = base.index(TEXT)
        prompt = base[:at] + text + base[at + len(TEXT) :]
        if slot is not None and slot > at:
            slot += len(text) - len(TEXT)
        # Strip like the research code, and move every offset with it.
        lead = len(prompt) - len(prompt.lstrip())
        prompt = prompt.strip()
        text_start = max(at - lead, 0)
        text_end = min(max(at + len(text) - lead, text_start), len(prompt))
        slot_char = None if slot is None else max(slot - lead, 0)
        # The constant head ends where <PST> stands, with or without TP, so both cache the same.
        head_end = text_start if slot_char is None else min(slot_char, text_start)
        return Filled(prompt, text_start, text_end, slot_char if with_pst else None, head_end)
