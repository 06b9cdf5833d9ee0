"""The decode settings of one use: a config's ``decode`` section with some keys overridden.

    opts = decode_settings(cfg.decode, beam=1)             # greedy, whatever the config says
    opts = decode_settings(cfg.decode, beam=5, n_best=1)   # beam search

A config's own settings can be meaningless under an override: ``coverage_penalty`` ranks the
hypotheses of beam search, so a beam of 1 has nothing to rank; ``sample`` draws one token at a
time, which beam search does not. :class:`seq2seq.config.DecodeConfig` rejects such a
combination, as it should in a config a user writes; but the server (a request's ``beam``),
``seq2seq export`` (its check decodes greedy and beam), the comparison (greedy and each beam)
and ``translate``/``evaluate``'s options override keys of a config someone else chose, and an
override must never make it invalid. :func:`decode_settings` is the one place that drops what an
override makes meaningless.
"""

import dataclasses
from typing import Any

from seq2seq.config import DecodeConfig


def decode_settings(base: DecodeConfig, **overrides: Any) -> DecodeConfig:
    """``base`` with ``overrides`` (keys of :class:`~seq2seq.config.DecodeConfig`), less the
    settings of ``base`` that the overrides make meaningless:

    - a beam of 1 drops ``base``'s ``coverage_penalty`` (0: off);
    - a beam over 1 drops ``base``'s ``sample`` (beam search takes no draws);
    - without sampling, ``base``'s ``n_best`` over the beam becomes the beam.

    A key given in ``overrides`` is kept as given, so overrides that contradict each other
    (``beam=1, coverage_penalty=0.2``) still raise :class:`seq2seq.errors.ConfigError`. With no
    overrides, ``base`` itself. To ask for the argmax where ``base`` samples, override
    ``sample=False`` too (greedy search is ``beam=1, sample=False``).
    """
    s = {**dataclasses.asdict(base), **overrides}  # unknown keys: TypeError from DecodeConfig
    inherited = lambda key: key not in overrides
    if s["beam"] == 1 and inherited("coverage_penalty"):
        s["coverage_penalty"] = 0.0
    if s["beam"] > 1 and inherited("sample"):
        s["sample"] = False
    if not s["sample"] and s["n_best"] > s["beam"] and inherited("n_best"):
        s["n_best"] = s["beam"]
    return DecodeConfig(**s)
