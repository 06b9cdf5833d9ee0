"""Plots written as PNG files (matplotlib, Agg backend: no display needed).

    attention_maps(maps, "att/")              # seq2seq translate --attention-plot att/
    training_curves(records, "run/curves.png")  # drawn by the training loop
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from torch import Tensor

AttentionMap = Tuple[Sequence[str], Sequence[str], Tensor]  # source pieces, output pieces, (T, S)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(plt, fig, path: Union[str, Path]) -> None:
    """Lay out, write as a PNG and close ``fig``."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def training_curves(records: List[Dict[str, Any]], path: Union[str, Path]) -> None:
    """Training and validation loss, and validation BLEU (with the teacher-forcing ratio),
    against the step, from the records of a run's ``metrics.jsonl``."""
    if not records:
        return
    plt = pyplot()
    steps = [r["step"] for r in records]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(steps, [r["train_loss"] for r in records], label="train (cross-entropy, as fed)")
    if "valid_loss" in records[-1]:  # no validation split: training curves only
        a.plot(steps, [r.get("valid_loss") for r in records], label="validation (teacher-forced)")
        b.plot(steps, [r.get("valid_bleu") for r in records], color="tab:green", marker=".")
    a.set_xlabel("step"), a.set_ylabel("loss per token"), a.legend()
    b.set_xlabel("step"), b.set_ylabel("validation BLEU (greedy)")
    if "tf_ratio" in records[0]:
        c = b.twinx()
        c.plot(steps, [r["tf_ratio"] for r in records], color="tab:gray", ls="--")
        c.set_ylabel("teacher-forcing ratio", color="tab:gray"), c.set_ylim(-0.05, 1.05)
    save(plt, fig, path)


def attention_maps(maps: List[Optional[AttentionMap]], out_dir: Union[str, Path]) -> int:
    """One heatmap per sentence: output pieces down the side, source pieces along the bottom.

    Args:
        maps: per input line, ``(source pieces, output pieces, weights (T, S))``, or None for a
            line that has no map (an empty line, or a model without attention). Row ``t`` of
            ``weights`` is the attention of output piece ``t`` over the source; rows sum to 1.
        out_dir: created if missing; line ``n`` (1-based) goes to ``attention_{n:04d}.png``.

    Returns:
        the number of PNG files written.
    """
    plt = pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for n, m in enumerate(maps, 1):
        if m is None:
            continue
        src, hyp, weights = m
        w = weights.detach().float().cpu().numpy()
        T, S = min(len(hyp), w.shape[0]), min(len(src), w.shape[1])
        if T == 0 or S == 0:
            continue
        w = w[:T, :S]  # (T, S)
        fig, ax = plt.subplots(figsize=(min(20.0, 1.5 + 0.35 * S), min(20.0, 1.2 + 0.35 * T)))
        im = ax.imshow(w, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto",
                       interpolation="nearest")
        ax.set_xticks(range(S))
        ax.set_xticklabels(src[:S], rotation=90, fontsize=8)
        ax.set_yticks(range(T))
        ax.set_yticklabels(hyp[:T], fontsize=8)
        ax.set_xlabel("source")
        ax.set_ylabel("output")
        fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
        save(plt, fig, out / f"attention_{n:04d}.png")
        written += 1
    return written
