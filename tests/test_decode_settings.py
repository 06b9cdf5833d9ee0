"""``decode_settings``: a config's decode section with keys overridden never becomes invalid
because of what the config set (coverage penalty, sampling, n-best), and keeps everything else;
overrides that contradict each other are still refused."""

import dataclasses

import pytest

from seq2seq.config import DecodeConfig
from seq2seq.decoding.settings import decode_settings
from seq2seq.errors import ConfigError

COVERAGE = DecodeConfig(beam=4, n_best=3, coverage_penalty=0.2, length_penalty=0.6,
                        no_repeat_ngram=2, max_len_a=1.5, max_len_b=3)
SAMPLE = DecodeConfig(sample=True, n_best=3, temperature=0.7, top_k=5, seed=9)


def changed(a: DecodeConfig, b: DecodeConfig) -> dict:
    """The keys whose values differ, with ``b``'s values."""
    return {k: v for k, v in dataclasses.asdict(b).items() if getattr(a, k) != v}


@pytest.mark.parametrize("base, overrides, expected", [
    (COVERAGE, {"beam": 1}, {"beam": 1, "coverage_penalty": 0.0, "n_best": 1}),
    (COVERAGE, {"beam": 1, "n_best": 1}, {"beam": 1, "coverage_penalty": 0.0, "n_best": 1}),
    (COVERAGE, {"beam": 2}, {"beam": 2, "n_best": 2}),  # the penalty ranks beams: kept
    (COVERAGE, {"beam": 6}, {"beam": 6}),
    (SAMPLE, {"beam": 5}, {"beam": 5, "sample": False}),  # n_best 3 <= 5: kept
    (SAMPLE, {"beam": 2}, {"beam": 2, "sample": False, "n_best": 2}),
    (SAMPLE, {"beam": 1}, {}),  # sampling at beam 1 is the config's choice: kept
    (SAMPLE, {"beam": 1, "sample": False}, {"sample": False, "n_best": 1}),  # the argmax
    (COVERAGE, {}, {}),
    (SAMPLE, {"bf16": True, "top_k": 0}, {"bf16": True, "top_k": 0}),
])
def test_an_override_drops_only_what_it_makes_meaningless(base, overrides, expected):
    assert changed(base, decode_settings(base, **overrides)) == expected


@pytest.mark.parametrize("base, overrides, words", [
    (COVERAGE, {"beam": 1, "coverage_penalty": 0.3}, "coverage_penalty"),
    (SAMPLE, {"beam": 3, "sample": True}, "decode.sample"),
    (DecodeConfig(), {"beam": 2, "n_best": 3}, "n_best"),
    (DecodeConfig(), {"beam": 0}, "beam must be > 0"),
])
def test_overrides_that_contradict_each_other_are_refused(base, overrides, words):
    with pytest.raises(ConfigError, match=words):
        decode_settings(base, **overrides)


def test_an_unknown_key_is_refused():
    with pytest.raises(TypeError, match="beams"):
        decode_settings(DecodeConfig(), beams=2)
