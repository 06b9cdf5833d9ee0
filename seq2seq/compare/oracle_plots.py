"""The figures of the exact-oracle measures (:mod:`seq2seq.compare.oracle`): one arm's curves
per scored set (``exaccerr-SETTING.png``), and every arm's mean curve side by side, a panel per
scored set (``exaccerr.png``)."""

from pathlib import Path
from typing import Sequence


def _reached(rs: Sequence[dict]) -> list:
    """The positions that at least 5% of the outputs (or 10) reach: the rest is noise."""
    floor = max(10, 0.05 * max(r["n"] for r in rs))
    return [r for r in rs if r["n"] >= floor]


def plot(setting: str, rows: Sequence[dict], path: Path, title: str) -> None:
    """One arm: ExAccErr(<=l) per scored set (top), the greedy error rate at l before (dashed)
    and after (solid) the first error (bottom). Where the rows hold a set's mean over seeds
    (``seed`` ``mean``), it is drawn with its hierarchical band and the seeds as thin lines;
    else each seed with its bootstrap band. Positions that fewer than 5% of the outputs (or 10)
    reach are left out."""
    from seq2seq.training.plots import pyplot, save

    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 7), sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    curves = {}
    for r in rows:
        curves.setdefault((r["set"], r["seed"]), []).append(r)
    averaged = {name for name, seed in curves if seed == "mean"}
    names = sorted({name for name, _ in curves})
    for k, ((name, seed), rs) in enumerate(sorted(curves.items(), key=lambda kv: str(kv[0]))):
        rs = _reached(rs)
        if not rs:
            continue
        n = names.index(name) if averaged else k  # a color per set, or per set and seed
        color, pos = colors[n % len(colors)], [r["position"] for r in rs]
        if name in averaged and seed != "mean":  # a seed under its set's mean
            top.plot(pos, [r["exaccerr"] for r in rs], color=color, lw=0.7, alpha=0.4)
            continue
        label = f"{name} mean over seeds" if seed == "mean" else f"{name} seed {seed}"
        top.plot(pos, [r["exaccerr"] for r in rs], color=color, label=label,
                 lw=2 if seed == "mean" else 1.5)
        if "exaccerr_lo" in rs[0]:
            top.fill_between(pos, [r["exaccerr_lo"] for r in rs],
                             [r["exaccerr_hi"] for r in rs], color=color, alpha=0.2, lw=0)
        bottom.plot(pos, [r["err_after"] for r in rs], color=color)
        bottom.plot(pos, [r["err_clean"] for r in rs], color=color, ls="--", alpha=0.7)
    top.axhline(0, color="grey", lw=0.8)
    top.set_ylabel("ExAccErr(<=l), nats\n(band: 95% bootstrap; over seeds: seeds, then "
                   "sentences)", fontsize=8)
    bottom.set_ylabel("greedy error rate at l\n(solid: after 1st error, dashed: before)")
    bottom.set_xlabel("output position l (pieces, EOS included; edit oracle: own output)")
    top.legend(fontsize=7)
    top.set_title(f"{setting}: excess accumulated error against the exact oracle\n{title}",
                  fontsize=9)
    save(plt, fig, path)


def plot_arms(rows: Sequence[dict], path: Path, title: str) -> None:
    """Every arm's ExAccErr(<=l), a panel per scored set: the mean over seeds with its band
    (seeds, then sentences) where the rows hold one (``seed`` ``mean``), else seed by seed;
    the arms in the order of ``rows``."""
    from seq2seq.training.plots import pyplot, save

    plt = pyplot()
    sets = list(dict.fromkeys(r["set"] for r in rows))
    arms = list(dict.fromkeys(r["setting"] for r in rows))
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes[0], sets):
        for k, arm in enumerate(arms):
            mine = [r for r in rows if r["set"] == name and r["setting"] == arm]
            means = [r for r in mine if r["seed"] == "mean"]
            for seed in ["mean"] if means else sorted({r["seed"] for r in mine}):
                rs = _reached([r for r in mine if r["seed"] == seed])
                if not rs:
                    continue
                pos, color = [r["position"] for r in rs], colors[k % len(colors)]
                ax.plot(pos, [r["exaccerr"] for r in rs], color=color,
                        label=arm if seed in ("mean", rs[0]["seed"]) else None)
                ax.fill_between(pos, [r["exaccerr_lo"] for r in rs],
                                [r["exaccerr_hi"] for r in rs], color=color, alpha=0.15, lw=0)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("output position l")
    axes[0][0].set_ylabel("ExAccErr(<=l), nats (mean over seeds, 95% band)")
    axes[0][0].legend(fontsize=7)
    import textwrap

    fig.suptitle("excess accumulated error against the exact oracle, every arm\n"
                 + textwrap.fill(title, 60 * len(sets)), fontsize=9)
    save(plt, fig, path)
