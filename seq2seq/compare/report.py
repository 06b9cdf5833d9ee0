"""The comparison's report: one row per setting (mean and standard deviation over seeds),
CSV files, the markdown table, and the plots."""

import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from seq2seq.training.plots import pyplot, save

from .stats import mean_std_ci

# -- tables ---------------------------------------------------------------------------------

METRICS = [  # (key in a run's result, column title, format)
    ("bleu", "BLEU", "{:.2f}"), ("chrf", "chrF", "{:.2f}"), ("exact_match", "exact %", "{:.1f}"),
    ("valid_loss_tf", "loss TF", "{:.3f}"), ("valid_loss_free", "loss free", "{:.3f}"),
    ("gap", "gap", "{:.3f}"), ("free_acc", "free acc %", "{:.1f}"),
]


def extra_columns(result: Dict[str, Any]) -> Dict[str, float]:
    """A run's scores at each beam size but 1 (``bleu_beam_K``) and on each extra test set
    (``bleu_NAME``, and ``bleu_NAME_beam_K``)."""
    out = {f"bleu_beam_{k}": v for k, v in result.get("bleu_by_beam", {}).items() if k != "1"}
    for name, v in result.get("extra_bleu", {}).items():
        out[f"bleu_{name}"] = v
        out.update({f"bleu_{name}_beam_{k}": b
                    for k, b in result.get("extra_bleu_by_beam", {}).get(name, {}).items()})
    return out


def hallucination_columns(result: Dict[str, Any], rates_only: bool = False
                          ) -> Dict[str, float]:
    """A run's hallucination figures (percent, greedy) per scored set ``SET`` (the test split
    and each extra one; :mod:`seq2seq.decoding.hallucination`): ``hallucination_rate_SET`` and
    ``hallucination_KIND_SET`` (exact, on the aligned toy tasks) or
    ``hallucination_proxy_rate_SET`` (the proxy, elsewhere); ``rates_only``: the rates."""
    keep = lambda k: (k in ("hallucination_rate", "hallucination_proxy_rate") if rates_only
                      else k != "hallucination_proxy_chrf")
    return {f"{k}_{name}": v for name, rep in (result.get("hallucination") or {}).items()
            for k, v in rep.items() if isinstance(v, (int, float)) and keep(k)}


def column_title(key: str) -> str:
    """``bleu_beam_5`` -> "BLEU beam 5", ``bleu_x`` -> "BLEU x", ``bleu_x_beam_5`` -> "BLEU x
    beam 5"."""
    head, sep, beam = key.rpartition("_beam_")
    name = (head if sep else key)[len("bleu_"):]
    return " ".join(w for w in ("BLEU", name, f"beam {beam}" if sep else "") if w)


def aggregate(settings, sched: Dict[str, dict], results: Dict[str, List[dict]], bucket_names
              ) -> List[Dict[str, Any]]:
    """One row per setting: mean, standard deviation and (``_ci95``) the half-width of the
    95% confidence interval over its seeds (also of the hallucination rate on each scored set,
    ``hallucination_rate_SET`` or ``hallucination_proxy_rate_SET``); the paired-bootstrap
    difference against the first setting (``bleu_diff``, mean over seeds) and in how many
    seeds it is significant at 0.05
    and its direction (``significantly_better``, ``significantly_worse``: seeds; ``_holm``: after
    Holm's correction over the settings of a seed); the budget the runs got and why they
    stopped."""
    rows = []
    for s in settings:
        rs = results[s.label]
        row = {"setting": s.label, "schedule": sched[s.label]["schedule"],
               "ratio_mean": sched[s.label]["ratio_mean"], "seeds": len(rs)}
        cols = [(k, [r[k] for r in rs]) for k, _, _ in METRICS]
        cols += [(f"bleu_len_{b}", [r["bleu_by_length"][b] for r in rs]) for b in bucket_names]
        cols += [(k, [extra_columns(r)[k] for r in rs]) for k in extra_columns(rs[0])]
        cols += [(k, [hallucination_columns(r, True).get(k, math.nan) for r in rs])
                 for k in hallucination_columns(rs[0], True)]
        cols += [(k, [r[k] for r in rs]) for k in ("steps", "epochs", "train_seconds",
                                                   "bleu_diff")]
        for k, xs in cols:
            row[k], row[k + "_std"], row[k + "_ci95"] = mean_std_ci(xs)
        for p in ("p_value", "p_holm"):
            tag = "" if p == "p_value" else "_holm"
            row["significantly_better" + tag] = sum(r[p] < 0.05 and r["bleu_diff"] > 0 for r in rs)
            row["significantly_worse" + tag] = sum(r[p] < 0.05 and r["bleu_diff"] < 0 for r in rs)
        row["stopped_by"] = ", ".join(sorted({r["stopped_by"] for r in rs}))
        rows.append(row)
    return rows


def write_csv(path: Path, rows: List[Dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})


def markdown_table(rows: List[Dict[str, Any]], bucket_names, seeds: int) -> str:
    """Mean ± standard deviation over seeds; BLEU also with its 95% confidence interval, and
    its paired-bootstrap difference from the first row with the seeds where it is significant
    (after Holm's correction first, uncorrected in brackets)."""
    def cell(row, key, fmt):
        if seeds > 1:
            return f"{fmt.format(row[key])} ± {fmt.format(row[key + '_std'])}"
        return fmt.format(row[key])

    not_extra = {"bleu_diff"} | {f"bleu_len_{b}" for b in bucket_names}
    extra = [k for k in rows[0] if k.startswith("bleu_") and not k.endswith(("_std", "_ci95"))
             and k not in not_extra]
    head = (["setting", "mean ratio"] + [t for _, t, _ in METRICS[:1]]
            + (["BLEU 95% CI"] if seeds > 1 else [])
            + [f"ΔBLEU vs {rows[0]['setting']}"] + (["ΔBLEU 95% CI"] if seeds > 1 else [])
            + ["p_Holm < 0.05 (uncorrected)"] + [t for _, t, _ in METRICS[1:]]
            + [f"BLEU len {b}" for b in bucket_names]
            + [column_title(k) for k in extra]
            + ["steps", "epochs", "train s", "stopped by"])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1))
             + "|"]
    for i, r in enumerate(rows):
        cells = [r["setting"], f"{r['ratio_mean']:.2f}", cell(r, "bleu", "{:.2f}")]
        if seeds > 1:
            cells.append(f"{r['bleu'] - r['bleu_ci95']:.2f} - {r['bleu'] + r['bleu_ci95']:.2f}")
        ci = ([f"{r['bleu_diff'] - r['bleu_diff_ci95']:+.2f} - "
               f"{r['bleu_diff'] + r['bleu_diff_ci95']:+.2f}"] if seeds > 1 else [])
        cells += (["(reference)"] + [""] * len(ci) + [""] if i == 0 else
                  [f"{r['bleu_diff']:+.2f}"] + ci
                  + [f"{r['significantly_better_holm']} better, "
                     f"{r['significantly_worse_holm']} worse of {r['seeds']} (uncorrected "
                     f"{r['significantly_better']}, {r['significantly_worse']})"])
        cells += [cell(r, k, fmt) for k, _, fmt in METRICS[1:]]
        cells += [cell(r, f"bleu_len_{b}", "{:.1f}") for b in bucket_names]
        cells += [cell(r, k, "{:.2f}") for k in extra]
        cells += [f"{r['steps']:.0f}", f"{r['epochs']:.1f}", cell(r, "train_seconds", "{:.0f}"),
                  r["stopped_by"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- plots ----------------------------------------------------------------------------------

def _err(stds: List[float]) -> Optional[List[float]]:
    """Error bars (the standard deviation over seeds), or None with one seed."""
    return stds if any(stds) else None


def plot_scores(rows, path: Path, title: str) -> None:
    """Test scores (left) and validation loss teacher-forced vs free-running (right)."""
    plt = pyplot()
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
    save(plt, fig, path)


def plot_by_length(rows, bucket_names, path: Path, title: str) -> None:
    """Test BLEU per reference-length bucket, one line per setting."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for r in rows:
        ax.errorbar(bucket_names, [r[f"bleu_len_{b}"] for b in bucket_names],
                    yerr=_err([r[f"bleu_len_{b}_std"] for b in bucket_names]), marker="o",
                    capsize=2, label=r["setting"])
    ax.set_xlabel("reference length (words)")
    ax.set_ylabel("test BLEU (greedy)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    save(plt, fig, path)


def plot_by_beam(rows, beam_sizes: List[int], path: Path, title: str,
                 extra: Sequence[str] = ()) -> None:
    """BLEU against the beam size, one line per setting, one panel per test set: the test
    split and each extra one (Wang and Sennrich, 2020: the loss of quality at large beams
    grows with exposure bias, most away from the training domain)."""
    plt = pyplot()
    sets = [("test", "")] + [(name, f"{name}_") for name in extra]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets) + 1.5, 4.2), squeeze=False)
    for ax, (name, infix) in zip(axes[0], sets):
        key = lambda k: (f"bleu_{infix[:-1]}" if infix else "bleu") if k == 1 else \
            f"bleu_{infix}beam_{k}"
        for r in rows:
            ax.errorbar(beam_sizes, [r[key(k)] for k in beam_sizes],
                        yerr=_err([r[key(k) + "_std"] for k in beam_sizes]), marker="o",
                        capsize=2, label=r["setting"])
        ax.set_xscale("log")
        ax.set_xticks(beam_sizes)
        ax.set_xticklabels([str(k) for k in beam_sizes])
        ax.set_xlabel("beam size")
        ax.set_ylabel(f"{name} BLEU")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    save(plt, fig, path)


def plot_curves(settings, run_dirs: Dict[str, List[Path]], sched: Dict[str, dict], path: Path,
                title: str) -> None:
    """From each run's metrics.jsonl: training loss, validation loss (teacher-forced solid,
    free-running dashed) and validation BLEU against the step; and each schedule's ratio,
    with the learning rate (dotted, the first seed's run) on a second axis."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lr_ax = None  # the learning rate's axis, on the ratio's panel
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
        axes[1, 1].plot(sched[s.label]["ratio_steps"], sched[s.label]["ratios"], color=color)
        f = run_dirs[s.label][0] / "metrics.jsonl"  # the learning rate, of the first seed
        recs = [json.loads(l) for l in f.read_text().splitlines()] if f.is_file() else []
        recs = [r for r in recs if "lr" in r]
        if recs:
            lr_ax = lr_ax or axes[1, 1].twinx()
            lr_ax.plot([r["step"] for r in recs], [r["lr"] for r in recs], color=color, ls=":",
                       lw=1)
            lr_ax.set_ylabel("learning rate (dotted)")
    axes[0, 0].set_ylabel("training loss (as trained)")
    axes[0, 1].set_ylabel("validation loss: TF solid, free dashed")
    axes[1, 0].set_ylabel("validation BLEU (greedy)")
    axes[1, 1].set_ylabel("teacher-forcing ratio")
    axes[1, 1].set_ylim(-0.05, 1.05)
    for ax in axes[1]:
        ax.set_xlabel("step")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    save(plt, fig, path)


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


#: error rates below this (percent) are drawn at it on the log axis of position_accuracy.png
ERROR_FLOOR = 0.01


def plot_positions(settings, rows, path: Path, title: str) -> None:
    """Token error rate (100 - accuracy) against target position on a log axis, free-running
    solid, teacher-forced dashed, and underneath the number of references that reach each
    position. Positions that fewer than 5% of the references (or 10) reach are left out; a rate
    of 0 is drawn at :data:`ERROR_FLOOR`."""
    plt = pyplot()
    fig, (ax, below) = plt.subplots(2, 1, figsize=(7.5, 5.6), sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    err = lambda rs, key: [max(ERROR_FLOOR, 100.0 - r[key]) for r in rs]
    for n, s in enumerate(settings):
        rs = [r for r in rows if r["setting"] == s.label]
        floor = max(10, 0.05 * max(r["n"] for r in rs))
        rs = [r for r in rs if r["n"] >= floor]
        color, pos = colors[n % len(colors)], [r["position"] for r in rs]
        ax.plot(pos, err(rs, "acc_free"), color=color, label=s.label)
        ax.plot(pos, err(rs, "acc_tf"), color=color, ls="--", alpha=0.6)
        if n == 0:  # every arm scores the same references
            below.bar(pos, [r["n"] for r in rs], color="grey", width=0.8)
    ax.set_yscale("log")
    ax.set_ylabel(f"token error rate % (log; free solid,\nTF dashed; 0 drawn at {ERROR_FLOOR})")
    below.set_ylabel("n (all seeds)")
    below.set_xlabel("target position (pieces, EOS included)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    save(plt, fig, path)
