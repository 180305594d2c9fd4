"""Texts to vectors: a decoder-only LLM with Token Prepending, and how to judge the result.

`backbone` loads the decoder stack (and `quantization` its 4-bit copy), `templates`,
`prompt_inputs` and `placeholder` build the model input with its <PST> slot, `head_cache` keeps
the template head's keys and values, `token_prepending` runs the method (`TPEncoder`),
`settings` resolves the layer settings and presets, `calibration` and `evaluation` measure
them on STS data. Everything above this package sees only `encoder.Encoder`.

Importing this package imports no torch; the modules that need it import it themselves.
"""
