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
                            (free-running); "gap" is free minus TF. It scores the reference
                            token after the model's own prefix: an exposure-bias measure only
                            where that token is still right (the position-aligned toy tasks);
                            on translation it is the divergence from the reference path (what
                            mixing arms are trained on)
  ExAccErr                  toy tasks, every scored set: the excess accumulated error
                            against the exact oracle (Arora et al., 2022; the reference token
                            on reverse, copy, sort, length_generalization, reverse_small; the
                            minimal edit from the prefix on commands, dates, number words) by
                            output position, with bootstrap bands (seed = mean: over seeds,
                            then sentences), and the error rate after the first error
                            (exaccerr.csv, exaccerr-SETTING.png; totals per run in runs.csv as
                            exaccerr_total_SET)
  error injection           the same tasks and sets: k = 1, 2, 4 wrong tokens (random, or the
                            model's second choice; gold: the clean run) forced at positions
                            t = 2, 5, 10 of a gold prefix, then greedy: the suffix's
                            accuracy, exact match and loss against the oracle (He et al.,
                            2021; injection.csv, injection.png, a table in results.md). On
                            translation with --injection-sentences: against the reference
                            suffix, labelled so
  hallucination             every scored set, greedy: seq2seq evaluate's rate (exact on the
                            aligned toy tasks; elsewhere a proxy, low chrF at high model
                            confidence), in runs.csv as hallucination_rate_SET or
                            hallucination_proxy_rate_SET, its mean over seeds in results.csv
  free acc                  token accuracy under free-running greedy decoding, over the
                            reference's positions (by position in position_accuracy.csv/.png)
  BLEU by length            test BLEU per reference-length bucket (words, near-equal buckets)
  steps, train s            updates made and training time (seconds in the training step)

Output folder: results.csv and results.md (one row per setting; with --seeds > 1, mean and
standard deviation), runs.csv (one row per run, McNemar's test of exact match in mcnemar_*),
comparisons.csv and forest-SET.png (per scored set, greedy and each beam: every arm's
difference from the first, pooled over seeds and sentences by a hierarchical bootstrap, Holm-
corrected, with its verdict at --margin and minimum detectable effect), position_accuracy.csv,
scores.png, bleu_by_length.png, training_curves.png, position_accuracy.png, and
runs/SETTING/seedN/ (each run's checkpoints, metrics.jsonl, test.hyp, the outputs on every
scored set, and result.json). Running the same command again
reuses finished runs and resumes an interrupted one; --fresh trains everything again. With
--set train.tensorboard=true each run folder also holds its TensorBoard events, one run per
setting and seed: tensorboard --logdir OUT/runs overlays them.
"""
SCHEDULES = ("constant", "linear", "exponential", "inverse_sigmoid")
SETTING_KEYS = ("ratio", "k", "c", "min", "unit", "feed", "temperature", "scope", "passes",
                "mix", "mix_gradient", "oracle", "objective")
#: setting keys outside teacher_forcing: the key -> its config section
OTHER_KEYS = {"objective": "train"}
#: settings by name: the arms the papers ran, each a schedule and teacher_forcing keys (the
#: keys not named here, scope among them, come from the config as for any setting)
PRESETS = {
    # Bengio et al. (2015): the model's sampled token, inverse-sigmoid decay toward 0
    "bengio": {"schedule": "inverse_sigmoid", "min": 0.0, "unit": "step", "feed": "sample",
               "temperature": 1.0},
    # Bengio et al.'s "always sampling" baseline: the model's samples from the first step on
    "always-sampling": {"schedule": "constant", "ratio": 0.0, "feed": "sample",
                        "temperature": 1.0},
    # Zhang et al. (2019)'s word-level oracle: argmax of logits plus Gumbel noise at tau = 1 (a
    # sample from the softmax), its probability decayed per epoch by an inverse sigmoid
    "zhang-word": {"schedule": "inverse_sigmoid", "min": 0.0, "unit": "epoch",
                   "feed": "sample", "temperature": 1.0},
    # Zhang et al. (2019)'s sentence-level oracle: a length-constrained beam search (with
    # Gumbel noise; the oracle section: oracle.beam, oracle.noise) picks the candidate of best
    # sentence BLEU, fed where the coin says "not gold", its probability decayed per epoch
    "sentence-oracle": {"schedule": "inverse_sigmoid", "min": 0.0, "unit": "epoch",
                        "oracle": "sentence"},
    # two-pass (parallel) scheduled sampling (Duckworth et al., 2019; Mihaylova and Martins,
    # 2019): a teacher-forced pass predicts every position, a second one is fed the mix;
    # Bengio et al.'s sampled feed and decay
    "two-pass": {"schedule": "inverse_sigmoid", "min": 0.0, "unit": "step", "passes": 2,
                 "mix": "sample", "temperature": 1.0},
    # minimum risk training (Shen et al., 2016): the expected cost of the model's own samples
    # (the mrt section: mrt.samples, mrt.cost, ...), without teacher forcing's mixing
    "mrt": {"schedule": "constant", "ratio": 1.0, "objective": "mrt"},
}
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
  feed (argmax|sample|uniform), temperature (of feed=sample), scope (token|sequence|batch);
  keys not given come from the config (k and c from the step budget: linear reaches its floor
  at the last step, exponential reaches 0.05, inverse_sigmoid starts at 0.95 or above and
  crosses 0.5 half-way). feed=uniform feeds a uniformly random token (never padding or BOS)
  where the coin says "not gold": the noise control, the same corruption rate without the
  model's own errors. Examples: constant:0.5,feed=sample,temperature=0.5  linear:min=0.25
  constant:0.5,scope=sequence  inverse_sigmoid:min=0.75  constant:0.75,feed=uniform
  Beyond scheduled sampling: passes (1|2: two-pass sampling), mix (argmax|sample|soft, with
  passes=2), mix_gradient (true|false), oracle (none|sentence), objective (mle|mrt, the
  train.objective key); their sections (oracle.*, mrt.*) come from the config (--set mrt.samples=4).
  Presets, the arms the papers ran (keys after a colon override theirs, e.g. bengio:k=50):
  bengio                     Bengio et al. (2015): inverse_sigmoid:min=0,feed=sample,temperature=1
  always-sampling            their "always sampling" baseline: constant:0,feed=sample,temperature=1
  zhang-word                 Zhang et al. (2019)'s word oracle (the argmax of logits plus
                             Gumbel noise: a sample at temperature 1), decayed per epoch:
                             inverse_sigmoid:unit=epoch,min=0,feed=sample,temperature=1 (their
                             mu is k: zhang-word:k=12; k unset: crosses 0.5 half-way)
  sentence-oracle            Zhang et al. (2019)'s sentence-level oracle (length-constrained
                             beam search with Gumbel noise, best sentence BLEU), decayed per
                             epoch: inverse_sigmoid:unit=epoch,min=0,oracle=sentence
  two-pass                   two-pass sampling (Duckworth et al., 2019), Bengio's decay:
                             inverse_sigmoid:min=0,passes=2,mix=sample,temperature=1 (the
                             soft feed of Goyal et al., 2017: two-pass:mix=soft,mix_gradient=true)
  mrt                        minimum risk training (Shen et al., 2016): constant:1,objective=mrt
  Example: --settings constant:1.0 bengio zhang-word bengio:feed=uniform
  Fine-tuning arms (--fine-tune 2000): constant:1.0 mrt sentence-oracle two-pass bengio

data:
  A toy recipe's config (no data.path) gets its data from seq2seq.data.toy, chosen by --toy or
  by the config's file name (reverse.yaml -> reverse). Any other config reads its
  data as `seq2seq train` does, once, and every run shares it. Multi30k from raw files:
    seq2seq compare-tf --config recipes/multi30k.yaml --set data.path=text \\
      --set "data.data_files={{train: [D/train.de, D/train.en], validation: [D/val.de, D/val.en], test: [D/test_2016_flickr.de, D/test_2016_flickr.en]}}" \\
      --set train.max_steps=3000 --set train.max_minutes=null --set train.patience=0 \\
      --set train.lr_schedule=constant \\
      --settings constant:1.0 constant:0.75 linear inverse_sigmoid --out runs/ctf-m30k

budget:
  Every run gets the config's step budget (train.max_steps / train.epochs). A time budget
  (train.max_minutes) or early stopping (train.patience) can stop runs at different steps;
  the "steps" column shows it. The plateau learning-rate schedule (multi30k.yaml's) reacts to
  each run's own validation, a confound: compare-tf warns; set a fixed one (constant, cosine).
  Settings below 1.0 train more slowly (the decoder steps token by token), so they take
  longer for the same steps.
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
                        "constant:0.5,scope=sequence inverse_sigmoid:min=0.75 bengio "
                        "bengio:feed=uniform")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="train each setting with N seeds (train.seed, +1, ...) and report the "
                        "mean ± standard deviation, a 95%% confidence interval and per-seed "
                        "paired bootstrap tests (default: 1). Example: --seeds 5")
    p.add_argument("--margin", type=float, default=1.0, metavar="POINTS",
                   help="equivalence margin of the verdicts, in points of each metric (BLEU, "
                        "chrF, exact match %%): an arm whose pooled 95%% interval (seeds and "
                        "sentences resampled) lies within ±POINTS of the reference arm is "
                        "'equivalent'; one whose interval excludes 0 with a Holm-corrected "
                        "p < 0.05 is 'better' or 'worse'; else 'undetermined', reported with "
                        "its minimum detectable effect (default: 1.0). Example: --margin 0.5")
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
    p.add_argument("--fine-tune", type=int, metavar="STEPS",
                   help="the fine-tuning design: first train one teacher-forced model per seed "
                        "(constant:1.0 with the config and --budget, e.g. --budget converge) "
                        "into OUT/pretrained/seedN, scored like the arms; then every setting "
                        "starts from its seed's pretrained checkpoint (--checkpoint) with a "
                        "fresh optimizer and learning-rate schedule and makes STEPS updates "
                        "(its schedule's horizon). Every arm of a seed then starts from the "
                        "same weights: 'slows learning' and 'changes what is learned' come "
                        "apart. Example: --budget converge --fine-tune 2000")
    p.add_argument("--fine-tune-set", action="append", default=[], metavar="a.b=c",
                   help="override a config key for the fine-tuning arms only, after --set "
                        "(repeatable; stage 1 keeps the config): their own learning rate and "
                        "schedule. Example: --fine-tune 300 --fine-tune-set "
                        "train.lr_schedule=constant --fine-tune-set train.warmup_steps=0 "
                        "--fine-tune-set train.lr=0.0002")
    p.add_argument("--beam-sizes", type=int, nargs="+", default=[1, 2, 5, 10], metavar="K",
                   help="test BLEU at each beam size (Wang and Sennrich, 2020, tie exposure "
                        "bias to the loss of quality at large beams); default: 1 2 5 10. "
                        "Example: --beam-sizes 1 5")
    add_extra_test_option(p, "e.g. an out-of-domain one, scored like the test split, greedy "
                             "and at every --beam-sizes size")
    p.add_argument("--injection-sentences", type=int, default=0, metavar="N",
                   help="error injection on translation (He et al., 2021): on the first N "
                        "pairs of every scored set, k = 1, 2, 4 wrong pieces (random, or the "
                        "model's second choice) forced at positions 2, 5, 10 of the gold "
                        "prefix, then greedy; the suffix's accuracy and loss against the "
                        "reference suffix, beside the clean run (injection.csv, .png, a table "
                        "in results.md). On translation this is the divergence from the "
                        "reference path, not recovery: a right paraphrase counts as wrong. "
                        "27 greedy passes over N pairs per set; finished runs are probed "
                        "without training or scoring again. Default 0: none (toy tasks with an "
                        "exact oracle always probe every output against it). Example: "
                        "--injection-sentences 300")
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
