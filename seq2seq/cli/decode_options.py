"""The decoding options of the command line, declared once (no torch import).

``translate`` and ``evaluate`` take :func:`add_decode_options`: each option overrides one key
of the checkpoint config's ``decode`` section (:class:`seq2seq.config.DecodeConfig`), and
:func:`decode_overrides` collects what was given; the checks of the values themselves live in
``DecodeConfig``, so a YAML file and the command line fail with the same message. Also here:
the argparse number types that ``seq2seq.cli.main`` shares.
"""

import argparse
from typing import Any, Dict


def count(lo: int):
    """An argparse type: an integer >= ``lo``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v
    return parse


def nonnegative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return v


def positive(text: str) -> float:
    v = nonnegative(text)
    if v == 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return v


def probability(text: str) -> float:
    v = positive(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return v


DECODE_OPTIONS = ("beam", "length_penalty", "n_best", "max_len_a", "max_len_b", "batch_size",
                  "bf16", "sample", "temperature", "top_k", "top_p", "seed", "no_repeat_ngram",
                  "coverage_penalty")


def add_decode_options(p: argparse.ArgumentParser, n_best: bool = True,
                       length_penalties: bool = False) -> None:
    """``--impl``, ``--device`` and the options that override the checkpoint's ``decode``
    config section (:class:`seq2seq.config.DecodeConfig`), declared once for ``translate``
    and ``evaluate``; :func:`decode_overrides` collects them. ``length_penalties``:
    ``--length-penalty`` takes several values (a list; ``evaluate``'s beam sweep, checked by
    :mod:`seq2seq.cli.evaluate_options`)."""
    p.add_argument("--impl", choices=["manual", "fused"],
                   help="decode with this layer implementation (the weights fit both)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--beam", type=count(1), metavar="N",
                   help="beam search with N beams; 1: greedy search (default: decode.beam of "
                        "the checkpoint's config, 1 unless set)")
    p.add_argument("--length-penalty", type=nonnegative, metavar="A",
                   nargs="+" if length_penalties else None,
                   help="GNMT length normalization exponent for beam search (0: none; "
                        "default: decode.length_penalty, 1.0)"
                        + ("; several values with --beam-sizes" if length_penalties else ""))
    if n_best:
        p.add_argument("--n-best", type=count(1), metavar="K",
                       help="write the K best hypotheses of the beam (K <= --beam), or K "
                            "samples with --sample: K lines per input line")
    p.add_argument("--max-len-a", type=nonnegative, metavar="A",
                   help="stop an output after A * source pieces + B pieces (default: "
                        "decode.max_len_a of the checkpoint's config, else the limit learned "
                        "from the training data, printed when it was trained)")
    p.add_argument("--max-len-b", type=count(0), metavar="B",
                   help="(default: decode.max_len_b, else learned from the training data)")
    p.add_argument("--batch-size", type=count(1), metavar="N",
                   help="sentences per batch (default from the config)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="decode with a bfloat16 copy of the weights under bfloat16 autocast: "
                        "1.4-1.5x faster greedy decoding on CPUs with bf16 instructions "
                        "(AVX512-BF16, AMX) and faster on GPUs, slower on other CPUs; "
                        "outputs may differ slightly (Multi30k: BLEU -0.1); default: decode.bf16 "
                        "of the config")
    g = p.add_argument_group("sampling (instead of the argmax; --beam 1)")
    g.add_argument("--sample", action="store_const", const=True, default=None,
                   help="draw each token from the model's distribution (back-translation, "
                        "diverse outputs); reproducible with --seed, whatever the batch size")
    g.add_argument("--temperature", type=positive, metavar="T",
                   help="divide the logits by T before sampling (< 1 closer to greedy, > 1 "
                        "more diverse; default 1)")
    g.add_argument("--top-k", type=count(0), metavar="K",
                   help="sample among the K most probable tokens only (0: all, the default; "
                        "1: greedy search)")
    g.add_argument("--top-p", type=probability, metavar="P",
                   help="nucleus sampling: among the fewest most probable tokens whose "
                        "probabilities add up to P (default 1: all)")
    g.add_argument("--seed", type=int, metavar="S",
                   help="the samples' seed (default: decode.seed, 1)")
    g = p.add_argument_group("repetition control")
    g.add_argument("--no-repeat-ngram", type=count(0), metavar="N",
                   help="no N-gram of pieces appears twice in one output (greedy, beam and "
                        "sampling; 0: off)")
    g.add_argument("--coverage-penalty", type=nonnegative, metavar="B",
                   help="beam search: rank finished hypotheses by log P / lp + B * sum over "
                        "source words of log(min(attention received, 1)) (GNMT; 0: off)")


def decode_overrides(args) -> Dict[str, Any]:
    """The decode options given on the command line, as ``decode`` config keys."""
    return {k: getattr(args, k, None) for k in DECODE_OPTIONS}
