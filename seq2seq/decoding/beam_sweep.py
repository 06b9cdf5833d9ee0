"""The beam sweep: one set decoded per (beam size, length penalty), and what the beam does to it.

    rows = sweep(model, tok, cfg, srcs, refs, "test", sizes=[1, 5, 50], penalties=[0, 1.0])
    print(format_sweep(rows)); plot_sweep(rows, "sweep.png")   # seq2seq evaluate --beam-sizes

Large beams find outputs the model prefers and the references do not: shorter ones, often
empty, without length normalization (Koehn and Knowles, 2017, "Six challenges for neural
machine translation"; Stahlberg and Byrne, 2019, "On NMT search errors and model errors: cat
got your tongue?"). Each row says so in numbers: BLEU and chrF, the length ratio (sacreBLEU's
``sys_len / ref_len``), the share of empty outputs, the share cut short by the output limit, and
the hallucination rate of :mod:`seq2seq.decoding.hallucination` (exact on the aligned toy
tasks, else its proxy). A beam of 1 is greedy search, which has no length penalty: it is
decoded once and its row repeated for each penalty, so every penalty's line starts from it.
"""

from typing import Any, Dict, List, Optional, Sequence

from .evaluate import evaluate_lines
from .hallucination import hallucination_report, oracle_task

#: a row's columns in the text table: (key, heading, format)
COLUMNS = (("beam", "beam", "{:d}"), ("length_penalty", "length penalty", "{:g}"),
           ("bleu", "BLEU", "{:.2f}"), ("chrf", "chrF", "{:.2f}"),
           ("length_ratio", "length ratio", "{:.3f}"), ("empty_pct", "empty %", "{:.1f}"),
           ("truncated_pct", "cut short %", "{:.1f}"))


def sweep(model, tok, cfg, srcs: Sequence[str], refs: Sequence[str], name: str,
          sizes: Sequence[int], penalties: Sequence[float], decode: Optional[dict] = None,
          device="cpu", progress: bool = False) -> List[Dict[str, Any]]:
    """Decode ``srcs`` once per beam size of ``sizes`` (1: greedy) and length penalty of
    ``penalties`` (0: none), with the other ``decode`` overrides; one row per pair, sizes
    ascending, then penalties as given: ``beam``, ``length_penalty``, ``bleu``, ``chrf``,
    ``length_ratio``, ``empty_pct`` and ``truncated_pct`` (percent of the lines), ``n``, and
    the hallucination rate (``hallucination_rate``, or ``hallucination_proxy_rate`` off the
    toy tasks)."""
    task = oracle_task(srcs, refs)
    rows = []
    for k in sorted(set(sizes)):
        greedy = None
        for a in dict.fromkeys(penalties):
            if greedy is None or k > 1:
                ev = evaluate_lines(model, tok, cfg, srcs, refs, name,
                                    {**(decode or {}), "beam": k, "length_penalty": a},
                                    device, progress, log_probs=True)
                greedy = ev
            rows.append({"beam": k, "length_penalty": a, **row(greedy, task)})
    return rows


def sweep_checkpoint(checkpoint, split: Optional[str], sizes: Sequence[int],
                     penalties: Sequence[float], decode: Optional[dict] = None,
                     impl: Optional[str] = None, device="auto", progress: bool = False,
                     errors: str = "strict") -> List[Dict[str, Any]]:
    """Load a checkpoint (as :func:`~seq2seq.decoding.evaluate.evaluate_checkpoint` does) and
    :func:`sweep` ``split`` (default: ``data.test_split``); no ``penalties``: the config's
    ``decode.length_penalty``."""
    from seq2seq.load import load_for_decoding

    from .evaluate import read_split

    model, tok, cfg, device = load_for_decoding(checkpoint, impl=impl, device=device)
    split = split or cfg.data.test_split
    srcs, refs = read_split(cfg, split, None, errors)
    return sweep(model, tok, cfg, srcs, refs, split, sizes,
                 penalties or [cfg.decode.length_penalty], decode, device, progress)


def row(ev, task: Optional[str]) -> Dict[str, Any]:
    """The figures of one decoding (an :class:`~seq2seq.decoding.evaluate.Evaluation` with
    ``per_token``) of a sweep row."""
    s, n = ev.scores, max(1, ev.scores["n"])
    h = hallucination_report(ev.srcs, ev.refs, ev.hyps, ev.per_token, task)
    key = "hallucination_rate" if task else "hallucination_proxy_rate"
    return {"bleu": s["bleu"], "chrf": s["chrf"], "length_ratio": s["length_ratio"],
            "empty_pct": round(100.0 * s["empty"] / n, 2),
            "truncated_pct": round(100.0 * s["truncated"] / n, 2), "n": s["n"], key: h[key]}


def format_sweep(rows: Sequence[Dict[str, Any]]) -> str:
    """The rows as a text table, one line per (beam, length penalty)."""
    hkey = next((k for k in rows[0] if k.startswith("hallucination")), None) if rows else None
    cols = list(COLUMNS) + ([(hkey, "hallucination %" if hkey == "hallucination_rate"
                              else "hallucination proxy %", "{:.1f}")] if hkey else [])
    cells = [[h for _, h, _ in cols]] + [[f.format(r[k]).strip() for k, _, f in cols]
                                         for r in rows]
    widths = [max(len(line[j]) for line in cells) for j in range(len(cols))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in cells)


def plot_sweep(rows: Sequence[Dict[str, Any]], path: str, title: str = "") -> None:
    """A PNG: BLEU and the length ratio against the beam size (log scale), one line per
    length penalty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for a in dict.fromkeys(r["length_penalty"] for r in rows):
        mine = [r for r in rows if r["length_penalty"] == a]
        label = "no length penalty" if a == 0 else f"length penalty {a:g}"
        for ax, key in zip(axes, ("bleu", "length_ratio")):
            ax.plot([r["beam"] for r in mine], [r[key] for r in mine], marker="o", label=label)
    sizes = sorted({r["beam"] for r in rows})
    for ax, ylabel in zip(axes, ("BLEU", "length ratio (output / reference)")):
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(k) for k in sizes])
        ax.minorticks_off()
        ax.set_xlabel("beam size")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].axhline(1.0, color="grey", lw=0.8)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
