"""The options of a training run, declared once (without importing torch): those ``seq2seq
train`` shares with every recipe script (:func:`add_run_options`), ``train``'s own
(:func:`add_train_options`, with its examples), and ``--debug`` and ``--encoding-errors``, which
every command has.
"""

import argparse
from typing import Optional

EPILOG_TRAIN = """examples:
  seq2seq train --config my.yaml --out runs/my
  seq2seq train --config my.yaml --set model.cell=gru --set train.max_steps=2000 --out runs/gru
  seq2seq train --config my.yaml --out runs/gru --resume      # continue an interrupted run
  seq2seq train --config my.yaml --out runs/tuned --init-from runs/my --set train.lr=1e-4
  seq2seq train --config my.yaml --out runs/mrt --init-from runs/my --set train.objective=mrt

Ctrl-C (or SIGTERM) saves a checkpoint at the end of the current step; --resume continues it.
--init-from starts a new run (fine-tuning, on other data or settings) from the weights and
tokenizer of a finished one, with a fresh optimizer, learning-rate schedule and step count;
the config's model section must describe the same architecture (model.impl, kernels,
manual_backward and dropout may differ).
train.objective: mrt minimizes the expected cost of the model's own samples (minimum risk
training; the mrt section: samples, sharpness, cost, mle_weight, include_reference), as
fine-tuning of a trained run (--init-from); a new run needs mrt.mle_weight > 0.
teacher_forcing.passes: 2 is two-pass scheduled sampling: a teacher-forced pass's predictions,
teacher_forcing.mix argmax | sample | soft (the softmax-weighted embedding; with
teacher_forcing.mix_gradient: true, trained through the first pass), mixed into the gold inputs
of a second teacher-forced pass at the schedule's ratio (needs model.input_feeding: false).
teacher_forcing.oracle: sentence feeds Zhang et al. (2019)'s sentence-level oracle at the
schedule's ratio: the best-BLEU candidate of a beam search of the reference's length, with
Gumbel noise (the oracle section: beam, noise); its cost per step is in the validation line.
The run folder gets last.pt, best.pt, config.yaml, metrics.jsonl and curves.png."""


def add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def add_encoding(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--encoding-errors", choices=["strict", "replace"], default="strict",
                   help=f"bytes in {what} that are not UTF-8: stop with an error naming the "
                        "file and line (strict), or replace them with U+FFFD (replace)")


def add_run_options(p: argparse.ArgumentParser, default_config: Optional[str] = None,
                    default_out: Optional[str] = None) -> None:
    """The options of a training run, for ``seq2seq train`` and every recipe script:
    ``--config``, ``--set``, ``--out``, ``--resume``, ``--no-progress``, ``--debug``."""
    p.add_argument("--config", default=default_config, metavar="FILE.yaml",
                   help="YAML config (see recipes/*.yaml); " + (
                       f"default: {default_config}" if default_config else "without it, the "
                       "defaults"))
    p.add_argument("--set", action="append", default=[], metavar="a.b=c",
                   help="override a config key, e.g. --set model.hidden_size=256 (repeatable)")
    p.add_argument("--out", required=default_out is None, default=default_out, metavar="DIR",
                   help="run folder for checkpoints, metrics.jsonl and curves.png"
                   + (f" (default: {default_out})" if default_out else ""))
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_debug(p)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """``seq2seq train``'s options beyond :func:`add_run_options`: ``--overwrite``,
    ``--device``, ``--encoding-errors``, ``--init-from``."""
    p.add_argument("--overwrite", action="store_true",
                   help="start again even if --out already holds a run")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides train.device")
    add_encoding(p, "plain-text, JSON or CSV data files")
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="start from the weights and tokenizer of a finished run (a run folder: "
                        "its best.pt, else last.pt; or a .pt file) with a fresh optimizer, "
                        "learning-rate schedule and step count; the model section must match "
                        "its architecture; not with --resume")
