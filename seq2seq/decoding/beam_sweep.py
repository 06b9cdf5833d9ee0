"""The beam sweep: one set decoded per (beam size, length penalty), and what the beam does to it.

    rows = sweep(model, tok, cfg, srcs, refs, "test", sizes=[1, 5, 50], penalties=[0, 1.0])
    print(format_sweep(rows)); plot_sweep({"test": rows}, "sweep.png")   # evaluate --beam-sizes
    sets = sweep_checkpoint("runs/x", "test", [1, 5], [0, 1.0], extra=[("ood", srcs, refs)])
    plot_sweep(sets, "sweep.png")   # one column of panels per set: the split, then "ood"

Large beams find outputs the model prefers and the references do not: shorter ones, often
empty, without length normalization (Koehn and Knowles, 2017, "Six challenges for neural
machine translation"; Stahlberg and Byrne, 2019, "On NMT search errors and model errors: cat
got your tongue?"). Each row says so in numbers: BLEU and chrF, the length ratio (sacreBLEU's
``sys_len / ref_len``), the share of empty outputs, the share cut short by the output limit, and
the hallucination rate of :mod:`seq2seq.decoding.hallucination` (exact on the aligned toy
tasks, else its proxy). A beam of 1 is greedy search, which has no length penalty: it is
decoded once and its row repeated for each penalty, so every penalty's line starts from it.

Out-of-domain sets (``evaluate --extra-test``) are swept the same way, each beside the split:
Wang and Sennrich (2020, "On exposure bias, hallucination and domain shift in neural machine
translation") see the loss of quality at large beams and the hallucinations grow under domain
shift, and less so after minimum risk training. ``scripts/beam_sweep.py`` sweeps every run of a
``compare-tf`` study with these functions.
"""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .evaluate import evaluate_lines
from .hallucination import hallucination_report, oracle_task

#: a row's columns in the text table: (key, heading, format)
COLUMNS = (("beam", "beam", "{:d}"), ("length_penalty", "length penalty", "{:g}"),
           ("bleu", "BLEU", "{:.2f}"), ("chrf", "chrF", "{:.2f}"),
           ("length_ratio", "length ratio", "{:.3f}"), ("empty_pct", "empty %", "{:.1f}"),
           ("truncated_pct", "cut short %", "{:.1f}"))


def sweep(model, tok, cfg, srcs: Sequence[str], refs: Sequence[str], name: str,
          sizes: Sequence[int], penalties: Sequence[float], decode: Optional[dict] = None,
          device="cpu", progress: bool = False, done: Optional[Callable[[], None]] = None
          ) -> List[Dict[str, Any]]:
    """Decode ``srcs`` once per beam size of ``sizes`` (1: greedy) and length penalty of
    ``penalties`` (0: none), with the other ``decode`` overrides; one row per pair, sizes
    ascending, then penalties as given: ``beam``, ``length_penalty``, ``bleu``, ``chrf``,
    ``length_ratio``, ``empty_pct`` and ``truncated_pct`` (percent of the lines), ``n``, and
    the hallucination rate (``hallucination_rate``, or ``hallucination_proxy_rate`` off the
    toy tasks). ``done`` is called after each decoding (:func:`decodings` of them)."""
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
                if done is not None:
                    done()
            rows.append({"beam": k, "length_penalty": a, **row(greedy, task)})
    return rows


def decodings(sizes: Sequence[int], penalties: Sequence[float]) -> int:
    """How many decodings :func:`sweep` makes: greedy once, each larger beam per penalty."""
    beams = set(sizes)
    return (1 in beams) + len(beams - {1}) * len(dict.fromkeys(penalties))


def sweep_checkpoint(checkpoint, split: Optional[str], sizes: Sequence[int],
                     penalties: Sequence[float], decode: Optional[dict] = None,
                     impl: Optional[str] = None, device="auto", progress: bool = False,
                     errors: str = "strict",
                     extra: Sequence[Tuple[str, List[str], List[str]]] = ()
                     ) -> Dict[str, List[Dict[str, Any]]]:
    """Load a checkpoint (as :func:`~seq2seq.decoding.evaluate.evaluate_checkpoint` does) and
    :func:`sweep` ``split`` (default: ``data.test_split``), then each ``extra`` set (name,
    sources, references: :func:`~seq2seq.decoding.evaluate.read_test_sets`); no
    ``penalties``: the config's ``decode.length_penalty``. Returns the rows per set's name,
    the split's first."""
    from seq2seq.errors import UserError
    from seq2seq.load import load_for_decoding

    from .evaluate import read_split

    model, tok, cfg, device = load_for_decoding(checkpoint, impl=impl, device=device)
    split = split or cfg.data.test_split
    sets = {split: read_split(cfg, split, None, errors)}
    for name, srcs, refs in extra:
        if name in sets:
            raise UserError(f"--extra-test {name}=...: the name of the split swept; call it "
                            "something else")
        sets[name] = (srcs, refs)
    return {name: sweep(model, tok, cfg, srcs, refs, name, sizes,
                        penalties or [cfg.decode.length_penalty], decode, device, progress)
            for name, (srcs, refs) in sets.items()}


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


def sweep_json(sets: Dict[str, Sequence[Dict[str, Any]]]) -> Dict[str, Any]:
    """``evaluate --beam-sizes --json``'s object: the first set's (the split's) rows under
    ``beam_sweep``, and, where there are others, ``extra``: ``{NAME: {"beam_sweep": rows}}``."""
    (_, rows), *others = sets.items()
    return {"beam_sweep": rows,
            **({"extra": {name: {"beam_sweep": r} for name, r in others}} if others else {})}


def format_sets(sets: Dict[str, Sequence[Dict[str, Any]]]) -> str:
    """:func:`format_sweep` of each set; with several, each table under its set's name."""
    if len(sets) == 1:
        return format_sweep(next(iter(sets.values())))
    return "\n\n".join(f"{name}:\n{format_sweep(rows)}" for name, rows in sets.items())


def plot_sweep(sets: Dict[str, Sequence[Dict[str, Any]]], path: str, title: str = "") -> None:
    """A PNG: one column of panels per set, side by side in the order given (the split first,
    then the out-of-domain sets), BLEU above and the length ratio below, against the beam size
    (log scale); each row of panels shares its y axis. One line style per length penalty;
    where rows name a ``setting``, one colour per setting (else one per penalty); rows that
    hold ``KEY_min`` and ``KEY_max`` also draw a band between them (a spread over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = [r for rows in sets.values() for r in rows]
    settings = list(dict.fromkeys(r.get("setting", "") for r in every))
    penalties = list(dict.fromkeys(r["length_penalty"] for r in every))
    sizes = sorted({r["beam"] for r in every})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ("-", "--", ":", "-.")
    n, ncol = len(sets), len(settings) if len(settings) > 1 else len(penalties)  # legend
    legend_in = 0.3 + 0.22 * -(-len(settings) * len(penalties) // ncol)  # its height, inches
    fig, axes = plt.subplots(2, n, figsize=(4.2 * n + 0.8, 7 + legend_in), sharey="row",
                             squeeze=False)
    for j, (name, rows) in enumerate(sets.items()):
        for si, setting in enumerate(settings):
            for pi, a in enumerate(penalties):
                mine = sorted((r for r in rows if r.get("setting", "") == setting
                               and r["length_penalty"] == a), key=lambda r: r["beam"])
                if not mine:
                    continue
                colour = colours[(si if len(settings) > 1 else pi) % len(colours)]
                label = ", ".join(x for x in (setting, "no length penalty" if a == 0
                                              else f"length penalty {a:g}") if x)
                xs = [r["beam"] for r in mine]
                for ax, key in zip(axes[:, j], ("bleu", "length_ratio")):
                    ax.plot(xs, [r[key] for r in mine], color=colour, ls=styles[pi % 4],
                            marker="o", ms=3, label=label)
                    if f"{key}_min" in mine[0]:
                        ax.fill_between(xs, [r[f"{key}_min"] for r in mine],
                                        [r[f"{key}_max"] for r in mine], color=colour,
                                        alpha=0.12, lw=0)
        axes[0, j].set_title(name)
        axes[1, j].axhline(1.0, color="grey", lw=0.8)
        axes[1, j].set_xlabel("beam size")
    for ax in axes.flat:
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(k) for k in sizes])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("BLEU")
    axes[1, 0].set_ylabel("length ratio (output / reference)")
    lines = {label: h for ax in axes[0] for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(list(lines.values()), list(lines), loc="lower center", ncol=ncol, fontsize=8,
               frameon=False)  # below the panels, one entry per line of every panel
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, legend_in / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
