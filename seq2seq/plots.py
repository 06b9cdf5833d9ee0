"""Plots written as PNG files (matplotlib, Agg backend: no display needed).

    attention_maps(maps, "att/")   # seq2seq translate --attention-plot att/
"""

from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from torch import Tensor

AttentionMap = Tuple[Sequence[str], Sequence[str], Tensor]  # source pieces, output pieces, (T, S)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    plt = _pyplot()
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
        fig.tight_layout()
        fig.savefig(out / f"attention_{n:04d}.png", dpi=100)
        plt.close(fig)
        written += 1
    return written
