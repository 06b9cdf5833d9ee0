"""The comparison's headline figure: a forest plot per scored set (``forest-SET.png``), one
row per arm, one panel per metric: each seed's difference from the reference arm (dots), the
pooled hierarchical 95% interval (a bar through the mean difference), a zero line and the
±margin equivalence band."""

from pathlib import Path
from typing import Any, Dict, List

from seq2seq.training.plots import pyplot, save

from .pooled import metrics_of


def plot_forest(rows: List[Dict[str, Any]], reference: str, path: Path, title: str) -> None:
    """``rows``: :func:`~.pooled.compare_sets`'s rows of one scored set (every metric)."""
    plt = pyplot()
    arms = list(dict.fromkeys(r["setting"] for r in rows))
    metrics = metrics_of(rows)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.0 * len(metrics) + 2.0,
                                                       1.0 + 0.55 * len(arms)),
                             sharey=True, squeeze=False)
    for ax, (metric, name) in zip(axes[0], metrics):
        for y, arm in enumerate(arms):
            r = next((r for r in rows if r["setting"] == arm and r["metric"] == metric), None)
            if r is None:
                continue
            ax.plot(r["per_seed"], [y] * len(r["per_seed"]), "o", color="tab:gray",
                    alpha=0.6, markersize=4, label="seed" if y == 0 else None)
            ax.errorbar([r["diff"]], [y], xerr=[[r["diff"] - r["lo"]], [r["hi"] - r["diff"]]],
                        fmt="s", color="tab:blue", capsize=4, lw=2,
                        label="pooled 95% CI" if y == 0 else None)
        margin = rows[0]["margin"]
        ax.axvspan(-margin, margin, color="tab:green", alpha=0.12, label=f"±{margin:g} margin")
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_xlabel(f"Δ{name} vs {reference}")
    axes[0][0].set_yticks(range(len(arms)))
    axes[0][0].set_yticklabels(arms, fontsize=8)
    axes[0][0].set_ylim(len(arms) - 0.5, -0.5)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{title}: {rows[0]['set']}", fontsize=10)
    save(plt, fig, path)
