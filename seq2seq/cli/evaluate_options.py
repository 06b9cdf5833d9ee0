"""``seq2seq evaluate``'s own options (no torch import): the beam sweep (``--beam-sizes``, with
several ``--length-penalty`` values, ``--plot``), the extra test sets (``--extra-test``, as
compare-tf's and the recipes'), the hallucination examples, a toy run's task
(``--toy``, ``--data-seed``), and the checks
that say a misuse in one line. The decoding options it shares with ``translate`` live in
:mod:`seq2seq.cli.decode_options` (there ``evaluate``'s ``--length-penalty`` takes a list).
"""

import argparse
from typing import Any, Dict

from seq2seq.data.readers import add_extra_test_option
from seq2seq.data.toy import TASKS
from seq2seq.errors import UserError

from .decode_options import count, decode_overrides

EPILOG_EVALUATE = """examples:
  seq2seq evaluate --hyp test.hyp --ref test.en                  # score a file
  seq2seq evaluate --checkpoint runs/my --split test --json      # decode a split and score it
  seq2seq evaluate --checkpoint runs/my --hallucination-examples halluc.txt
  seq2seq evaluate --checkpoint runs/my --beam-sizes 1 2 5 10 20 50 --length-penalty 0 1.0 \\
      --plot sweep.png                                           # the beam sweep
  seq2seq evaluate --checkpoint runs/my --beam-sizes 1 5 20 50 --length-penalty 0 1.0 \\
      --extra-test coco=test_2017_mscoco.de,test_2017_mscoco.en --plot sweep.png  # + coco
  seq2seq evaluate --checkpoint runs/reverse --json --plot exaccerr.png   # a toy run
  seq2seq evaluate --checkpoint runs/ctf/runs/constant-1.0/seed1 --toy reverse  # compare-tf's

With --checkpoint the scores include the hallucination rate (JSON keys starting with
"hallucination"): exact on the position-aligned toy tasks (reverse, copy, sort,
length_generalization; recognized from the data), else a proxy (hallucination_proxy_rate: sentence
chrF < 15 while the model's per-token log-probability is above the median). The beam sweep
decodes the split once per (beam size, length penalty; 0: none) and prints per pair BLEU, chrF,
the length ratio, the share of empty outputs, of outputs cut short by the output limit, and the
hallucination rate (with --json: a list under "beam_sweep").

--extra-test NAME=SRC,REF (repeatable; the syntax of compare-tf and the recipes) decodes and
scores another set the same way, e.g. an out-of-domain one: the plain scores and hallucination
rate, or with --beam-sizes the whole sweep, per set. With --json the split's keys stay as they
are and each set's go under "extra": {"NAME": {...}} (the sweep: {"NAME": {"beam_sweep":
[...]}}); --plot draws one column of panels per set, side by side with the split's, each row
on one y axis. --output, --hallucination-examples and a toy run's exposure-bias keys stay the
split's. scripts/beam_sweep.py runs the sweep over every run of a compare-tf study.

On a toy run (a config without data.path) the data is generated again: the task recipes/toy.py
recorded in the run's scores.json, or --toy TASK (compare-tf's runs record none). Where the task
has an exact oracle (those of compare-tf's ExAccErr: reverse, copy, sort, ...) the scores also
hold exposure bias against it on the split (Arora et al. 2022; keys starting with "exaccerr":
exaccerr_total, the excess accumulated loss per output, exaccerr_total_pct,
exaccerr_error_before_first/_after_first, exaccerr_by_position) and error injection (He et al.
2021; keys starting with "injection": the suffix's accuracy after k forced wrong tokens);
--plot without --beam-sizes draws the ExAccErr curve."""


def add_evaluate_options(p: argparse.ArgumentParser) -> None:
    """``--beam-sizes``, ``--plot``, ``--extra-test``, ``--hallucination-examples``, ``--toy``
    and ``--data-seed``."""
    g = p.add_argument_group("beam sweep and hallucination (with --checkpoint)")
    g.add_argument("--beam-sizes", type=count(1), nargs="+", metavar="K",
                   help="decode the split once per beam size (1: greedy) and length penalty "
                        "(--length-penalty A [A ...], default: the config's) and print one row "
                        "per pair. Example: --beam-sizes 1 5 20 50 --length-penalty 0 1.0")
    g.add_argument("--plot", metavar="FILE.png",
                   help="with --beam-sizes: plot BLEU and the length ratio against the beam "
                        "size, one line per length penalty (one column of panels per set with "
                        "--extra-test); without, on a toy run with an "
                        "exact oracle: the ExAccErr curve. Example: --plot exaccerr.png")
    add_extra_test_option(g, "decoded and scored like the split; with --beam-sizes swept "
                             "and plotted beside it")
    g.add_argument("--hallucination-examples", metavar="FILE",
                   help="write up to 20 outputs of each hallucination kind (source, "
                        "reference, output) for a human to read")
    t = p.add_argument_group("toy runs (a config without data.path, with --checkpoint)")
    t.add_argument("--toy", choices=tuple(TASKS), metavar="TASK",
                   help="the toy task whose data the run trained on (default: the one "
                        "recipes/toy.py recorded in the run's scores.json): "
                        + ", ".join(TASKS) + ". Example: --toy reverse")
    t.add_argument("--data-seed", type=int, metavar="N",
                   help="seed of the toy data (default: the recorded one, else 1)")


def check_evaluate(args) -> None:
    """One line for each option given where it means nothing."""
    sweep = args.beam_sizes is not None
    if args.hyp or args.ref:
        for given, name in ((sweep, "--beam-sizes"), (args.plot, "--plot"),
                            (args.extra_test, "--extra-test"),
                            (args.hallucination_examples, "--hallucination-examples"),
                            (args.toy, "--toy"), (args.data_seed is not None, "--data-seed")):
            if given:
                raise UserError(f"{name} decodes a split: give --checkpoint, not --hyp/--ref")
    if sweep and (args.toy or args.data_seed is not None):
        raise UserError("--toy and --data-seed are for one decoding: the beam sweep reads its "
                        "split from data.path")
    if len(args.length_penalty or ()) > 1 and not sweep:
        raise UserError("several --length-penalty values are for the beam sweep: give "
                        "--beam-sizes too")
    if sweep and args.beam is not None:
        raise UserError("--beam-sizes replaces --beam: give one of them")
    if sweep and args.output:
        raise UserError("--output saves one decoding and --beam-sizes makes several: give one "
                        "of them")
    if sweep and args.hallucination_examples:
        raise UserError("--hallucination-examples writes the examples of one decoding: run it "
                        "without --beam-sizes")


def evaluate_overrides(args) -> Dict[str, Any]:
    """:func:`~seq2seq.cli.decode_options.decode_overrides` with ``length_penalty`` one value
    (None with several: the sweep's)."""
    penalties = args.length_penalty or []
    return {**decode_overrides(args),
            "length_penalty": penalties[0] if len(penalties) == 1 else None}
