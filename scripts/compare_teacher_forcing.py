"""Compare teacher-forcing ratios and scheduled-sampling schedules on one task.

Trains one model per setting (and per seed) with the same data, seed and step budget,
decodes the test split greedily, scores it with sacreBLEU, and measures exposure bias on the
validation split. Bengio, Vinyals, Jaitly and Shazeer (2015), "Scheduled Sampling for Sequence
Prediction with Recurrent Neural Networks"; the schedules are in seq2seq/teacher_forcing.py.

    python scripts/compare_teacher_forcing.py --out runs/compare-tf            # reverse toy task
    seq2seq compare-tf --settings constant:1.0 constant:0.5 linear --seeds 3 --out runs/ctf

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
reuses finished runs and resumes an interrupted one; --fresh trains everything again.
"""

import argparse
import csv
import dataclasses
import json
import math
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "recipes" / "reverse.yaml"
SCHEDULES = ("constant", "linear", "exponential", "inverse_sigmoid")
SETTING_KEYS = ("ratio", "k", "c", "min", "unit", "feed")
DEFAULT_SETTINGS = ("constant:1.0", "constant:0.75", "constant:0.5", "constant:0.25",
                    "constant:0.0", "linear", "exponential", "inverse_sigmoid")
TOY_TASKS = ("reverse", "copy", "sort", "dates", "number_words", "length_generalization")

EPILOG = f"""settings (--settings, space-separated; default: {' '.join(DEFAULT_SETTINGS)}):
  constant:R                 feed the gold token with probability R throughout
  linear[:k=K,c=C,min=M]     eps_i = max(M, K - C*i)
  exponential[:k=K,min=M]    eps_i = max(M, K**i), K < 1
  inverse_sigmoid[:k=K]      eps_i = K / (K + exp(i/K)), K >= 1
  Any teacher_forcing key can be given as key=value: ratio, k, c, min, unit (step|epoch),
  feed (argmax|sample); keys not given come from the config (k and c from the step budget:
  linear reaches its floor at the last step, exponential reaches 0.05, inverse_sigmoid
  crosses 0.5 half-way). Examples: constant:0.5,feed=sample  linear:min=0.25

data:
  A toy recipe's config (no data.path) gets its data from recipes/toy_tasks.py, chosen by
  the config's file name (reverse.yaml -> reverse) or --toy. Any other config reads its
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


class Setting(NamedTuple):
    """One teacher-forcing setting: its label and the teacher_forcing keys it sets."""

    label: str  # canonical form, e.g. "constant:0.5" or "inverse_sigmoid:k=20"
    keys: Dict[str, Any]  # teacher_forcing overrides, always with "schedule"


# -- settings -------------------------------------------------------------------------------

def _value(raw: str):
    """``"20"`` -> 20, ``"1e-3"`` -> 0.001, anything else stays a string (``"sample"``)."""
    for number in (int, float):
        try:
            return number(raw)
        except ValueError:
            pass
    return raw


def parse_setting(text: str) -> Setting:
    """``"constant:0.5"``, ``"linear"``, ``"inverse_sigmoid:k=20,min=0.1"`` -> :class:`Setting`.

    Values are checked against the config's rules (types and ranges) by the caller's
    :func:`apply_setting`; this checks the syntax, the schedule name and the key names.
    """
    import difflib

    from seq2seq.errors import UserError

    def bad(msg):
        raise UserError(f"--settings {text!r}: {msg}")

    name, _, rest = text.strip().partition(":")
    if name not in SCHEDULES:
        close = difflib.get_close_matches(name, SCHEDULES, n=1, cutoff=0.5)
        bad(f"unknown schedule {name!r}" + (f" (did you mean {close[0]!r}?)" if close else
                                           f" (known: {', '.join(SCHEDULES)})"))
    keys: Dict[str, Any] = {"schedule": name}
    for n, part in enumerate([p.strip() for p in rest.split(",")] if rest.strip() else []):
        if "=" not in part:
            if name == "constant" and n == 0:
                part = f"ratio={part}"  # constant:0.5 is constant:ratio=0.5
            else:
                bad(f"expected key=value after the colon, got {part!r} (keys: "
                    f"{', '.join(SETTING_KEYS)})")
        key, _, raw = part.partition("=")
        key = key.strip()
        if key not in SETTING_KEYS:
            close = difflib.get_close_matches(key, SETTING_KEYS, n=1, cutoff=0.5)
            bad(f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else
                                         f" (keys: {', '.join(SETTING_KEYS)})"))
        if key in keys:
            bad(f"{key} is given twice")
        if not raw.strip():
            bad(f"{key} has no value")
        keys[key] = _value(raw.strip())
    label = name
    params = [(k, v) for k, v in keys.items() if k != "schedule"]
    if params:
        if name == "constant" and params[0][0] == "ratio":
            label += f":{params[0][1]}" + "".join(f",{k}={v}" for k, v in params[1:])
        else:
            label += ":" + ",".join(f"{k}={v}" for k, v in params)
    return Setting(label, keys)


def parse_settings(texts: Sequence[str]) -> List[Setting]:
    """Parse every setting (a list item may hold several, space-separated); no duplicates."""
    from seq2seq.errors import UserError

    out: List[Setting] = []
    for t in (s for text in texts for s in text.split()):
        s = parse_setting(t)
        if any(s.label == o.label for o in out):
            raise UserError(f"--settings: {s.label} is given twice")
        out.append(s)
    if not out:
        raise UserError("--settings: give at least one setting, e.g. constant:1.0")
    return out


def apply_setting(cfg, setting: Setting, seed: int):
    """The config of one run: the base config with this setting's teacher forcing and seed.

    Schedule parameters ``k`` and ``c`` are not inherited from the base config (they mean
    different things per schedule); ``ratio``, ``min``, ``unit`` and ``feed`` are.
    """
    from seq2seq import config
    from seq2seq.errors import UserError

    tf = {**dataclasses.asdict(cfg.teacher_forcing), "k": None, "c": None, **setting.keys}
    try:
        tf_cfg = config.from_dict({"teacher_forcing": tf}).teacher_forcing
    except UserError as e:
        raise UserError(f"--settings {setting.label}: {e}") from None
    return cfg.replace(teacher_forcing=tf_cfg, train=dataclasses.replace(cfg.train, seed=seed))


def schedule_summary(tf, steps_per_epoch: int, total_steps: int, epochs: int) -> Dict[str, Any]:
    """The schedule's parameters as the training loop resolves them, its ratio at the start
    and the end, and its mean over the run (mirrors the loop in seq2seq/train.py)."""
    from seq2seq import teacher_forcing as sched

    tf_total = total_steps if tf.unit == "step" else epochs
    params = {} if tf.schedule == "constant" else sched.default_params(tf.schedule, tf_total,
                                                                        tf.min)
    for k in ("k", "c"):
        if getattr(tf, k) is not None and tf.schedule != "constant":
            params[k] = getattr(tf, k)
    unit = (lambda i: i) if tf.unit == "step" else (lambda i: i // max(1, steps_per_epoch))
    ratios = [sched.ratio_at(tf, unit(i), tf_total) for i in range(max(1, total_steps))]
    if tf.schedule == "constant":
        desc = f"ratio={tf.ratio:g}"
    else:
        desc = ", ".join(f"{k}={v:.4g}" for k, v in params.items())
        if tf.schedule in ("linear", "exponential") or tf.min:
            desc += f", min={tf.min:g}"
    if tf.unit != "step":
        desc += f", per {tf.unit}"
    if tf.feed != "argmax":
        desc += f", feed={tf.feed}"
    return {"schedule": desc, "ratio_start": ratios[0], "ratio_end": ratios[-1],
            "ratio_mean": sum(ratios) / len(ratios), "ratios": ratios}


# -- data -----------------------------------------------------------------------------------

def toy_dataset(task: str, seed: int):
    """The data that the toy recipe ``recipes/TASK.py`` generates with ``--data-seed SEED``."""
    from seq2seq.errors import UserError

    sys.path.insert(0, str(ROOT / "recipes"))
    try:
        import toy_tasks
    except ImportError as e:
        raise UserError(f"the toy task {task} needs recipes/toy_tasks.py ({e})") from None
    if task in ("reverse", "copy"):
        return toy_tasks.reverse(seed=seed, task=task)
    if task == "length_generalization":  # longer test sequences than any seen in training
        import length_generalization as lg

        return toy_tasks.reverse(seed=seed, min_len=lg.TRAIN_LENGTHS[0],
                                 max_len=lg.TRAIN_LENGTHS[1], test_min_len=lg.TEST_LENGTHS[0],
                                 test_max_len=lg.TEST_LENGTHS[1])
    if task == "number_words":
        return toy_tasks.numbers(seed=seed)
    return getattr(toy_tasks, task)(seed=seed)  # sort, dates


def load_data(cfg, config_path: str, toy: Optional[str], data_seed: int):
    """The data of every run, as a ``datasets.DatasetDict`` (loaded or generated once)."""
    from datasets import Dataset, DatasetDict

    from seq2seq.data import load_splits
    from seq2seq.errors import UserError

    if cfg.data.path is None:
        task = toy or Path(config_path).stem
        if task not in TOY_TASKS:
            raise UserError(f"{config_path} sets no data.path and is not a toy recipe "
                            f"({', '.join(TOY_TASKS)}): set data.path (see --help), or --toy")
        return toy_dataset(task, data_seed)
    if toy:
        raise UserError(f"--toy {toy}: {config_path} reads its data from data.path "
                        f"{cfg.data.path!r}; drop --toy or use a toy recipe's config")
    d = cfg.data
    splits = [s for s in dict.fromkeys((d.train_split, d.valid_split, d.test_split)) if s]
    pairs = load_splits(d, splits)
    return DatasetDict({s: Dataset.from_dict({d.src: src, d.tgt: tgt})
                        for s, (src, tgt) in pairs.items()})


def length_buckets(lengths: Sequence[int], n: int) -> List[tuple]:
    """Up to ``n`` buckets ``(lo, hi)`` of near-equal size that cover ``lengths``."""
    xs = sorted(lengths)
    if not xs:
        return []
    his = sorted({xs[max(0, math.ceil(len(xs) * q / n) - 1)] for q in range(1, n + 1)})
    los = [xs[0]] + [h + 1 for h in his[:-1]]
    return list(zip(los, his))


def bucket_label(b: tuple) -> str:
    return f"{b[0]}" if b[0] == b[1] else f"{b[0]}-{b[1]}"


# -- one run --------------------------------------------------------------------------------

def position_accuracy(model, data, batch_size: int, device) -> Dict[str, List[int]]:
    """Per target position (EOS included): how many references reach it, and how many tokens
    the model gets right there when teacher-forced and when free-running (greedy: fed its own
    argmax, run for the reference's length)."""
    import torch

    from seq2seq.data import bucket_batches, iterate
    from seq2seq.tokenizer import PAD

    T = max(len(t) for t in data.tgt) + 1
    n = torch.zeros(T, dtype=torch.long)  # references that reach each position
    tf = torch.zeros(T, dtype=torch.long)  # right tokens, teacher-forced
    free = torch.zeros(T, dtype=torch.long)  # right tokens, free-running
    model.eval()
    lens = [len(s) for s in data.src]
    with torch.no_grad():
        for batch in iterate(data, bucket_batches(lens, [len(t) for t in data.tgt], batch_size)):
            batch = batch.to(device)
            mask = batch.tgt_out != PAD  # (B, T_b)
            L = mask.size(1)
            n[:L] += mask.sum(0).cpu()
            for ratio, acc in ((1.0, tf), (0.0, free)):
                pred = model(batch.src, batch.src_len, batch.tgt_in, ratio).argmax(-1)  # (B, T_b)
                acc[:L] += ((pred == batch.tgt_out) & mask).sum(0).cpu()
    return {"n": n.tolist(), "correct_tf": tf.tolist(), "correct_free": free.tolist()}


def train_and_evaluate(cfg, run_dir: Path, dataset, buckets, checkpoint: str, progress: bool,
                       fresh: bool) -> Dict[str, Any]:
    """Train one model, then score it. A finished run with the same config is reused; an
    interrupted one (or one scored with other buckets) is resumed from its last.pt."""
    from seq2seq.checkpoint import load_model
    from seq2seq.config import to_yaml
    from seq2seq.data import encode_pairs, load_splits
    from seq2seq.decode import translate
    from seq2seq.evaluate import score
    from seq2seq.train import log, pick_device, train, validate

    result_path = run_dir / "result.json"
    if not fresh and result_path.is_file():
        old = json.loads(result_path.read_text(encoding="utf-8"))
        if (old.get("config") == cfg.to_dict() and old.get("checkpoint") == checkpoint
                and list(old.get("bleu_by_length", {})) == [bucket_label(b) for b in buckets]):
            log(f"reusing the finished run in {run_dir} (--fresh trains it again)")
            return old
    same_run = (not fresh and (run_dir / "config.yaml").is_file()
                and (run_dir / "config.yaml").read_text(encoding="utf-8") == to_yaml(cfg))
    t0 = time.time()
    summary = train(cfg, run_dir, resume=same_run, overwrite=True, dataset=dataset,
                    progress=progress, extra_validation={"free_running": True})
    if summary["interrupted"]:
        raise KeyboardInterrupt
    device = pick_device(cfg.train.device)
    model, tok, cfg = load_model(run_dir / f"{checkpoint}.pt", device=device)
    d = cfg.data
    diag_split = d.valid_split or d.test_split
    eval_split = d.test_split or d.valid_split
    splits = load_splits(d, list(dict.fromkeys([diag_split, eval_split])), dataset)
    diag = encode_pairs(tok, splits[diag_split])
    v = validate(model, diag, tok, cfg, device, free_running=True)
    pos = position_accuracy(model, diag, cfg.decode.batch_size, device)
    srcs, refs = splits[eval_split]
    hyps = translate(model, tok, srcs, cfg.decode.batch_size, cfg.decode.max_len_a,
                     cfg.decode.max_len_b, device=device)
    (run_dir / f"{eval_split}.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    s = score(hyps, refs)
    by_len = {}
    for b in buckets:
        idx = [i for i, r in enumerate(refs) if b[0] <= len(r.split()) <= b[1]]
        by_len[bucket_label(b)] = score([hyps[i] for i in idx], [refs[i] for i in idx])["bleu"]
    result = {
        "bleu": s["bleu"], "chrf": s["chrf"], "exact_match": s["exact_match"],
        "valid_loss_tf": v["valid_loss"], "valid_loss_free": v["valid_loss_free"],
        "gap": v["valid_loss_free"] - v["valid_loss"],
        "free_acc": 100.0 * sum(pos["correct_free"]) / max(1, sum(pos["n"])),
        "tf_acc": 100.0 * sum(pos["correct_tf"]) / max(1, sum(pos["n"])),
        "bleu_by_length": by_len, "steps": summary["steps"],
        "train_seconds": summary["train_seconds"], "wall_seconds": time.time() - t0,
        "position": pos, "eval_split": eval_split, "diag_split": diag_split,
        "signature": s["signature"], "checkpoint": checkpoint, "config": cfg.to_dict(),
    }
    result_path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


# -- tables ---------------------------------------------------------------------------------

METRICS = [  # (key in a run's result, column title, format)
    ("bleu", "BLEU", "{:.2f}"), ("chrf", "chrF", "{:.2f}"), ("exact_match", "exact %", "{:.1f}"),
    ("valid_loss_tf", "loss TF", "{:.3f}"), ("valid_loss_free", "loss free", "{:.3f}"),
    ("gap", "gap", "{:.3f}"), ("free_acc", "free acc %", "{:.1f}"),
]


def mean_std(xs: Sequence[float]) -> tuple:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def aggregate(settings, sched: Dict[str, dict], results: Dict[str, List[dict]], bucket_names
              ) -> List[Dict[str, Any]]:
    """One row per setting: mean and standard deviation over its seeds."""
    rows = []
    for s in settings:
        rs = results[s.label]
        row = {"setting": s.label, "schedule": sched[s.label]["schedule"],
               "ratio_mean": sched[s.label]["ratio_mean"], "seeds": len(rs)}
        cols = [(k, [r[k] for r in rs]) for k, _, _ in METRICS]
        cols += [(f"bleu_len_{b}", [r["bleu_by_length"][b] for r in rs]) for b in bucket_names]
        cols += [("steps", [r["steps"] for r in rs]),
                 ("train_seconds", [r["train_seconds"] for r in rs])]
        for k, xs in cols:
            row[k], row[k + "_std"] = mean_std(xs)
        rows.append(row)
    return rows


def write_csv(path: Path, rows: List[Dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})


def markdown_table(rows: List[Dict[str, Any]], bucket_names, seeds: int) -> str:
    def cell(row, key, fmt):
        if seeds > 1:
            return f"{fmt.format(row[key])} ± {fmt.format(row[key + '_std'])}"
        return fmt.format(row[key])

    head = (["setting", "mean ratio"] + [t for _, t, _ in METRICS]
            + [f"BLEU len {b}" for b in bucket_names] + ["steps", "train s"])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1))
             + "|"]
    for r in rows:
        cells = [r["setting"], f"{r['ratio_mean']:.2f}"]
        cells += [cell(r, k, fmt) for k, _, fmt in METRICS]
        cells += [cell(r, f"bleu_len_{b}", "{:.1f}") for b in bucket_names]
        cells += [f"{r['steps']:.0f}", cell(r, "train_seconds", "{:.0f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- plots ----------------------------------------------------------------------------------

def _err(stds: List[float]) -> Optional[List[float]]:
    """Error bars (the standard deviation over seeds), or None with one seed."""
    return stds if any(stds) else None


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scores(rows, path: Path, title: str) -> None:
    """Test scores (left) and validation loss teacher-forced vs free-running (right)."""
    plt = _pyplot()
    labels = [r["setting"] for r in rows]
    x = list(range(len(rows)))
    fig, (a, b) = plt.subplots(1, 2, figsize=(max(9.0, 1.3 * len(rows) + 3), 4.2))
    for j, (key, name) in enumerate((("bleu", "BLEU"), ("chrf", "chrF"),
                                     ("exact_match", "exact match %"))):
        a.bar([i + (j - 1) * 0.27 for i in x], [r[key] for r in rows], 0.27,
              yerr=_err([r[key + "_std"] for r in rows]), capsize=2, label=name)
    a.set_ylabel("test score (greedy)")
    for j, (key, name) in enumerate((("valid_loss_tf", "teacher-forced"),
                                     ("valid_loss_free", "free-running"))):
        b.bar([i + (j - 0.5) * 0.4 for i in x], [r[key] for r in rows], 0.4,
              yerr=_err([r[key + "_std"] for r in rows]), capsize=2, label=name)
    b.set_ylabel("validation loss per token")
    for ax in (a, b):
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.legend(fontsize=8, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(title, fontsize=10)
    _save(plt, fig, path)


def plot_by_length(rows, bucket_names, path: Path, title: str) -> None:
    """Test BLEU per reference-length bucket, one line per setting."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for r in rows:
        ax.errorbar(bucket_names, [r[f"bleu_len_{b}"] for b in bucket_names],
                    yerr=_err([r[f"bleu_len_{b}_std"] for b in bucket_names]), marker="o",
                    capsize=2, label=r["setting"])
    ax.set_xlabel("reference length (words)")
    ax.set_ylabel("test BLEU (greedy)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    _save(plt, fig, path)


def plot_curves(settings, run_dirs: Dict[str, List[Path]], sched: Dict[str, dict], path: Path,
                title: str) -> None:
    """From each run's metrics.jsonl: training loss, validation loss (teacher-forced solid,
    free-running dashed) and validation BLEU against the step; and each schedule's ratio."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, s in enumerate(settings):
        color = colors[n % len(colors)]
        for k, d in enumerate(run_dirs[s.label]):
            f = d / "metrics.jsonl"
            recs = [json.loads(l) for l in f.read_text().splitlines()] if f.is_file() else []
            if not recs:
                continue
            steps = [r["step"] for r in recs]
            label = s.label if k == 0 else None
            axes[0, 0].plot(steps, [r["train_loss"] for r in recs], color=color, label=label)
            if "valid_loss" not in recs[0]:  # no validation split
                continue
            axes[0, 1].plot(steps, [r["valid_loss"] for r in recs], color=color)
            axes[0, 1].plot(steps, [r["valid_loss_free"] for r in recs], color=color, ls="--")
            axes[1, 0].plot(steps, [r["valid_bleu"] for r in recs], color=color)
        ratios = sched[s.label]["ratios"]
        axes[1, 1].plot(range(1, len(ratios) + 1), ratios, color=color)
    axes[0, 0].set_ylabel("training loss (as trained)")
    axes[0, 1].set_ylabel("validation loss: TF solid, free dashed")
    axes[1, 0].set_ylabel("validation BLEU (greedy)")
    axes[1, 1].set_ylabel("teacher-forcing ratio")
    axes[1, 1].set_ylim(-0.05, 1.05)
    for ax in axes[1]:
        ax.set_xlabel("step")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(plt, fig, path)


def position_rows(settings, results) -> List[Dict[str, Any]]:
    """Token accuracy by target position, pooled over each setting's seeds."""
    rows = []
    for s in settings:
        pos = [r["position"] for r in results[s.label]]
        for t in range(max(len(p["n"]) for p in pos)):
            n = sum(p["n"][t] for p in pos if t < len(p["n"]))
            if n == 0:
                continue
            tf = sum(p["correct_tf"][t] for p in pos if t < len(p["n"]))
            free = sum(p["correct_free"][t] for p in pos if t < len(p["n"]))
            rows.append({"setting": s.label, "position": t + 1, "n": n,
                         "acc_tf": 100.0 * tf / n, "acc_free": 100.0 * free / n})
    return rows


def plot_positions(settings, rows, path: Path, title: str) -> None:
    """Token accuracy against target position: free-running solid, teacher-forced dashed.

    Positions that fewer than 5% of the references (or 10) reach are left out."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, s in enumerate(settings):
        rs = [r for r in rows if r["setting"] == s.label]
        floor = max(10, 0.05 * max(r["n"] for r in rs))
        rs = [r for r in rs if r["n"] >= floor]
        color = colors[n % len(colors)]
        ax.plot([r["position"] for r in rs], [r["acc_free"] for r in rs], color=color,
                label=s.label)
        ax.plot([r["position"] for r in rs], [r["acc_tf"] for r in rs], color=color, ls="--",
                alpha=0.6)
    ax.set_xlabel("target position (pieces, EOS included)")
    ax.set_ylabel("token accuracy % (free solid, TF dashed)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    _save(plt, fig, path)


# -- main -----------------------------------------------------------------------------------

def _shown_path(path: str) -> str:
    """A path relative to the repository when it is inside it (recipes/reverse.yaml)."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compare_teacher_forcing.py", description=__doc__,
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), metavar="FILE.yaml",
                   help="the base config (default: recipes/reverse.yaml with its generated data)")
    p.add_argument("--set", action="append", default=[], metavar="a.b=c",
                   help="override a config key, e.g. --set train.max_steps=500 (repeatable)")
    p.add_argument("--settings", nargs="+", metavar="SETTING",
                   help="teacher-forcing settings to compare (see below)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="train each setting with N seeds (train.seed, +1, ...) and report the "
                        "mean ± standard deviation (default: 1)")
    p.add_argument("--out", default="runs/compare-tf", metavar="DIR",
                   help="output folder (default: runs/compare-tf)")
    p.add_argument("--buckets", type=int, default=4, metavar="N",
                   help="number of reference-length buckets for BLEU by length (default: 4)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="score each run's best.pt (best validation BLEU, the default, as the "
                        "recipes do) or last.pt (the end of the budget)")
    p.add_argument("--toy", choices=TOY_TASKS,
                   help="toy task to generate for a config without data.path (default: the "
                        "config's file name)")
    p.add_argument("--data-seed", type=int, default=1, metavar="N",
                   help="seed of the generated toy data (default: 1)")
    p.add_argument("--fresh", action="store_true",
                   help="train every run again instead of reusing finished runs in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def compare(args, argv: Sequence[str]) -> str:
    """Run the comparison described by the parsed ``args``; returns the markdown table."""
    from seq2seq import config
    from seq2seq.errors import UserError

    settings = parse_settings(args.settings or DEFAULT_SETTINGS)
    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    if args.buckets < 1:
        raise UserError(f"--buckets must be >= 1, got {args.buckets}")
    cfg = config.load(args.config, args.set)
    seeds = [cfg.train.seed + k for k in range(args.seeds)]
    plan = [(s, seed, apply_setting(cfg, s, seed)) for s in settings for seed in seeds]
    if not (cfg.data.test_split or cfg.data.valid_split):
        raise UserError("the config has neither data.test_split nor data.valid_split to score")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")

    from tqdm import tqdm  # the slow imports (torch) after the quick checks

    from seq2seq.data import load_splits
    from seq2seq.train import Data, log

    if cfg.train.patience or cfg.train.max_minutes:
        log("note: train.patience or train.max_minutes is set, so runs may stop at different "
            "steps; --set train.patience=0 --set train.max_minutes=null gives all the same budget")

    dataset = load_data(cfg, args.config, args.toy, args.data_seed)
    data = Data(cfg, None, dataset)  # to count the steps, and to check the data before training
    steps_per_epoch = len(data.train_batches(cfg, 0))
    total = min(cfg.train.max_steps or 10**12, cfg.train.epochs * steps_per_epoch)
    sched = {s.label: schedule_summary(c.teacher_forcing, steps_per_epoch, total,
                                       cfg.train.epochs) for s, _, c in plan}
    eval_split = cfg.data.test_split or cfg.data.valid_split
    refs = load_splits(cfg.data, [eval_split], dataset)[eval_split][1]
    buckets = length_buckets([len(r.split()) for r in refs], args.buckets)
    bucket_names = [bucket_label(b) for b in buckets]
    log(f"comparing {len(settings)} setting(s) x {len(seeds)} seed(s), {total} steps each, "
        f"in {out}")

    slug = {s.label: s.label.replace(":", "-").replace(",", "-").replace("=", "") for s in settings}
    results: Dict[str, List[dict]] = {s.label: [] for s in settings}
    run_dirs: Dict[str, List[Path]] = {s.label: [] for s in settings}
    bar = tqdm(plan, desc="runs", unit="run", disable=args.no_progress, dynamic_ncols=True,
               file=sys.stderr)
    for s, seed, run_cfg in bar:
        bar.set_postfix_str(f"{s.label} seed {seed}")
        d = out / "runs" / slug[s.label] / f"seed{seed}"
        d.mkdir(parents=True, exist_ok=True)
        r = train_and_evaluate(run_cfg, d, dataset, buckets, args.checkpoint,
                               not args.no_progress, args.fresh)
        log(f"{s.label} seed {seed}: BLEU {r['bleu']:.2f} exact {r['exact_match']:.1f}% loss "
            f"TF {r['valid_loss_tf']:.3f} free {r['valid_loss_free']:.3f} "
            f"({r['train_seconds']:.0f} s)")
        results[s.label].append(dict(r, setting=s.label, seed=seed))
        run_dirs[s.label].append(d)
    bar.close()

    rows = aggregate(settings, sched, results, bucket_names)
    write_csv(out / "results.csv", rows)
    write_csv(out / "runs.csv", [
        {"setting": r["setting"], "seed": r["seed"], **{k: r[k] for k, _, _ in METRICS},
         **{f"bleu_len_{b}": r["bleu_by_length"][b] for b in bucket_names},
         "steps": r["steps"], "train_seconds": r["train_seconds"]}
        for s in settings for r in results[s.label]])
    pos_rows = position_rows(settings, results)
    write_csv(out / "position_accuracy.csv", pos_rows)
    title = f"{_shown_path(args.config)}, {total} steps, {len(seeds)} seed(s)"
    plot_scores(rows, out / "scores.png", title)
    plot_by_length(rows, bucket_names, out / "bleu_by_length.png", title)
    plot_curves(settings, run_dirs, sched, out / "training_curves.png", title)
    plot_positions(settings, pos_rows, out / "position_accuracy.png", title)

    table = markdown_table(rows, bucket_names, len(seeds))
    first = results[settings[0].label][0]
    seeds_text = ("seeds " + ", ".join(map(str, seeds)) + ": mean ± standard deviation"
                  if len(seeds) > 1 else f"seed {seeds[0]}")
    config_text = _shown_path(args.config) + (" with --set " + " --set ".join(args.set)
                                               if args.set else "")
    sched_lines = "\n".join(f"- `{r['setting']}`: {r['schedule']} (ratio "
                            f"{sched[r['setting']]['ratio_start']:.2f} -> "
                            f"{sched[r['setting']]['ratio_end']:.2f}, mean {r['ratio_mean']:.2f})"
                            for r in rows)
    md = f"""# Teacher forcing comparison

    python scripts/compare_teacher_forcing.py {shlex.join(argv)}

- config: {config_text}
- budget: {total} steps per run ({steps_per_epoch} batches per epoch); {seeds_text}
- scores: greedy decoding of the {first['eval_split']} split with each run's {args.checkpoint}.pt;
  sacreBLEU {first['signature']}
- diagnostics: on the {first['diag_split']} split

{table}

Columns: "mean ratio", the teacher-forcing ratio averaged over the training steps; "loss TF"
and "loss free", the validation loss per token when the decoder is fed the gold previous token
and when it is fed its own argmax; "gap" = loss free - loss TF (exposure bias); "free acc",
token accuracy of free-running greedy decoding over the reference's positions (per position in
position_accuracy.csv); "BLEU len", test BLEU by reference length in words; "train s", seconds
spent in training steps.

Schedules as resolved for this budget:
{sched_lines}

Plots: scores.png, bleu_by_length.png, training_curves.png, position_accuracy.png.
"""
    (out / "results.md").write_text(md, encoding="utf-8")
    print(table)
    print(f"\nresults in {out / 'results.md'}, {out / 'results.csv'} and plots in {out}")
    return table


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from seq2seq.errors import UserError

    try:
        compare(args, argv)
        return 0
    except UserError as e:
        if args.debug:
            raise
        print(f"compare_teacher_forcing: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("compare_teacher_forcing: interrupted; run the same command again to continue "
              "(finished runs are reused)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
