"""The command line of the teacher-forcing comparison (``seq2seq compare-tf``).

Declared here, without importing torch, so that ``seq2seq --help`` stays quick.
"""

import argparse
from pathlib import Path
from typing import Optional

from seq2seq.data.readers import add_extra_test_option
from seq2seq.data.toy import TASKS

DESCRIPTION = """Compare teacher-forcing ratios and scheduled-sampling schedules (Bengio et al.,
2015) on one task: one model per setting and seed, with the same data, seed and step budget;
greedy decoding of the test split scored with sacreBLEU; exposure bias measured on the
validation split.

Per setting it reports:
  BLEU, chrF, exact match   greedy decoding of the test split (sacreBLEU)
  loss TF / loss free       validation loss per token when the decoder is fed the gold previous
                            token (teacher-forced) and when it is fed its own argmax
                            (free-running); "gap" is free minus TF: the cost of exposure bias
  free acc                  token accuracy under free-running greedy decoding, over the
                            reference's positions (by position in position_accuracy.csv/.png)
  BLEU by length            test BLEU per reference-length bucket (words, near-equal buckets)
  steps, train s            updates made and training time (seconds in the training step)

Output folder: results.csv and results.md (one row per setting; with --seeds > 1, mean and
standard deviation), runs.csv (one row per run), position_accuracy.csv, scores.png,
bleu_by_length.png, training_curves.png, position_accuracy.png, and runs/SETTING/seedN/ (each
run's checkpoints, metrics.jsonl, test.hyp and result.json). Running the same command again
reuses finished runs and resumes an interrupted one; --fresh trains everything again. With
--set train.tensorboard=true each run folder also holds its TensorBoard events, one run per
setting and seed: tensorboard --logdir OUT/runs overlays them.
"""
SCHEDULES = ("constant", "linear", "exponential", "inverse_sigmoid")
SETTING_KEYS = ("ratio", "k", "c", "min", "unit", "feed", "temperature", "scope")
DEFAULT_SETTINGS = ("constant:1.0", "constant:0.75", "constant:0.5", "constant:0.25",
                    "constant:0.0", "linear", "exponential", "inverse_sigmoid")
#: the default --config: the reverse recipe's (a copy of recipes/reverse.yaml, shipped with the
#: package, so that an installed package runs it too)
DEFAULT_CONFIG = Path(__file__).resolve().with_name("reverse.yaml")

EPILOG = f"""settings (--settings, space-separated; default: {' '.join(DEFAULT_SETTINGS)}):
  constant:R                 feed the gold token with probability R throughout
  linear[:k=K,c=C,min=M]     eps_i = max(M, K - C*i)
  exponential[:k=K,min=M]    eps_i = max(M, K**i), K < 1
  inverse_sigmoid[:k=K,c=C]  eps_i = K / (K + exp(C*i/K)), K >= 1 (C = 1: the paper's form)
  Any teacher_forcing key can be given as key=value: ratio, k, c, min, unit (step|epoch),
  feed (argmax|sample), temperature (of feed=sample), scope (token|sequence|batch); keys not
  given come from the config (k and c from the step budget: linear reaches its floor at the
  last step, exponential reaches 0.05, inverse_sigmoid starts at 0.95 or above and crosses
  0.5 half-way). Examples: constant:0.5,feed=sample,temperature=0.5  linear:min=0.25
  constant:0.5,scope=sequence  inverse_sigmoid:min=0.75

data:
  A toy recipe's config (no data.path) gets its data from seq2seq.data.toy, chosen by --toy or
  by the config's file name (reverse.yaml -> reverse). Any other config reads its
  data as `seq2seq train` does, once, and every run shares it. Multi30k from raw files:
    seq2seq compare-tf --config recipes/multi30k.yaml --set data.path=text \\
      --set "data.data_files={{train: [D/train.de, D/train.en], validation: [D/val.de, D/val.en], test: [D/test_2016_flickr.de, D/test_2016_flickr.en]}}" \\
      --set train.max_steps=3000 --set train.max_minutes=null --set train.patience=0 \\
      --settings constant:1.0 constant:0.75 linear inverse_sigmoid --out runs/ctf-m30k

budget:
  Every run gets the config's step budget (train.max_steps / train.epochs). A time budget
  (train.max_minutes) or early stopping (train.patience) can stop runs at different steps;
  the "steps" column shows it. Settings below 1.0 train more slowly (the decoder steps
  token by token), so they take longer for the same steps.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the comparison's options on ``p`` (its description and epilog too)."""
    p.description = DESCRIPTION
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--config", metavar="FILE.yaml",
                   help="the base config (default: recipes/reverse.yaml, with its generated "
                        "data; the package holds a copy of it). Example: --config "
                        "recipes/commands.yaml")
    p.add_argument("--set", action="append", default=[], metavar="a.b=c",
                   help="override a config key (repeatable). Example: --set train.max_steps=500")
    p.add_argument("--settings", nargs="+", metavar="SETTING",
                   help="teacher-forcing settings to compare, the first the reference of the "
                        "significance tests (see below). Example: --settings constant:1.0 "
                        "constant:0.5,scope=sequence inverse_sigmoid:min=0.75")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="train each setting with N seeds (train.seed, +1, ...) and report the "
                        "mean ± standard deviation, a 95%% confidence interval and per-seed "
                        "paired bootstrap tests (default: 1). Example: --seeds 5")
    p.add_argument("--out", default="runs/compare-tf", metavar="DIR",
                   help="output folder, resumable: keep it outside the work tree for long "
                        "studies (default: runs/compare-tf). Example: --out ~/studies/tf")
    p.add_argument("--buckets", type=int, default=4, metavar="N",
                   help="number of reference-length buckets for BLEU by length (default: 4). "
                        "Example: --buckets 3")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="score each run's best.pt (best validation BLEU, the default, as the "
                        "recipes do) or last.pt (the end of the budget). Example: --checkpoint "
                        "last")
    p.add_argument("--toy", choices=tuple(TASKS),
                   help="toy task to generate for a config without data.path (default: the "
                        "config's file name). Example: --config my.yaml --toy sort")
    p.add_argument("--data-seed", type=int, default=1, metavar="N",
                   help="seed of the generated toy data (default: 1). Example: --data-seed 2")
    p.add_argument("--budget", choices=("steps", "minutes", "converge"), default="steps",
                   help="what every run gets: steps (the same number of updates, the config's "
                        "train.max_steps/epochs; early stopping and the time limit are switched "
                        "off), minutes (the same training time, train.max_minutes; the steps "
                        "stay a cap and set the schedules' horizon: make them more than the "
                        "minutes allow), converge "
                        "(each run until validation BLEU stops improving, train.patience, 5 "
                        "unless set, capped by the config's steps/epochs/minutes); default: "
                        "steps. Example: --budget minutes --set train.max_minutes=10")
    p.add_argument("--beam-sizes", type=int, nargs="+", default=[1, 2, 5, 10], metavar="K",
                   help="test BLEU at each beam size (Wang and Sennrich, 2020, tie exposure "
                        "bias to the loss of quality at large beams); default: 1 2 5 10. "
                        "Example: --beam-sizes 1 5")
    add_extra_test_option(p, "e.g. an out-of-domain one, scored like the test split, greedy "
                             "and at every --beam-sizes size")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train N runs at once, splitting train.threads between them (2 jobs "
                        "of 1 thread on a 2-core machine: about half the wall time); results "
                        "equal those of --jobs 1 when each run has 1 thread (the default). "
                        "Example: --jobs 2")
    p.add_argument("--fresh", action="store_true",
                   help="train every run again instead of reusing finished runs in --out "
                        "(example: --fresh)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars, e.g. for a log file (example: --no-progress)")
    p.add_argument("--debug", action="store_true",
                   help="show tracebacks on errors (example: --debug)")


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog)
    add_arguments(p)
    return p
