"""Each arm against the reference arm, pooled over seeds: on every scored set (the test split
and the extra ones, greedy and at each beam size) and for BLEU, chrF and exact match (and the
greedy hallucination rate, lower better, where the runs kept their flags), one
interval that carries the seed and the test-set variance (a hierarchical bootstrap), Holm's
correction across arms, the minimum detectable effect and a verdict; McNemar's test of exact
match per run; their tables."""

import re
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from .stats import (
    bootstrap_stats,
    flag_stats,
    hierarchical_bootstrap,
    holm,
    mcnemar,
    min_detectable_effect,
    verdict,
)

METRICS = (("bleu", "BLEU"), ("chrf", "chrF"), ("exact_match", "exact %"))
#: the greedy hallucination rate (points; lower is better), where every run kept its flags
HALLUCINATION = ("hallucination", "hallucination %")
#: the metrics where a lower score is better
LOWER_BETTER = {"hallucination"}


def hyp_file(name: str, beam: int) -> str:
    """The file in a run folder holding the outputs on set ``name`` at ``beam`` (1: greedy):
    ``test.hyp``, ``test.beam5.hyp``."""
    return f"{name}.hyp" if beam == 1 else f"{name}.beam{beam}.hyp"


class ScoredSet(NamedTuple):
    """A set every run is scored on, with one search."""

    name: str  # the set's name: the test split's or an --extra-test NAME
    beam: int  # 1: greedy
    refs: List[str]

    @property
    def label(self) -> str:
        """``test``, ``test beam 5``."""
        return self.name if self.beam == 1 else f"{self.name} beam {self.beam}"

    @property
    def slug(self) -> str:
        """For file names: ``test``, ``test-beam5``."""
        name = re.sub(r"[^\w.-]+", "-", self.name)
        return name if self.beam == 1 else f"{name}-beam{self.beam}"


def scored_sets(split: str, refs: List[str], beam_sizes: Sequence[int], extra) -> List[ScoredSet]:
    """The test split and each ``(name, sources, references)`` of ``extra``, greedy (first)
    and at every beam size."""
    named = [(split, refs)] + [(name, r) for name, _, r in extra]
    return [ScoredSet(name, k, r) for name, r in named for k in sorted({1, *beam_sizes})]


def _hyps(run_dirs: Sequence[Path], s: ScoredSet) -> Optional[List[List[str]]]:
    """Each seed's outputs on ``s``, or None where a run folder lacks them (an older run)."""
    files = [d / hyp_file(s.name, s.beam) for d in run_dirs]
    if not all(f.is_file() for f in files):
        return None
    return [f.read_text(encoding="utf-8").splitlines() for f in files]


def mcnemar_runs(settings, results: Dict[str, List[dict]], run_dirs: Dict[str, List[Path]],
                 main: ScoredSet) -> None:
    """Each run's McNemar test of exact match on ``main`` against the reference arm's run with
    the same seed (``mcnemar_b``, ``mcnemar_c``, ``mcnemar_p``), and per seed Holm's
    adjustment across the arms (``mcnemar_p_holm``), into its result."""
    base = settings[0].label
    exact = lambda hyps: [h.strip() == r.strip() for h, r in zip(hyps, main.refs)]
    for s in settings:
        for j, (r, d) in enumerate(zip(results[s.label], run_dirs[s.label])):
            pair = _hyps([run_dirs[base][j], d], main)
            r.update(mcnemar(*map(exact, pair)) if pair else
                     {"mcnemar_b": float("nan"), "mcnemar_c": float("nan"),
                      "mcnemar_p": float("nan")})
    others = [s.label for s in settings[1:]]
    for j in range(len(results[base])):
        results[base][j]["mcnemar_p_holm"] = results[base][j]["mcnemar_p"]
        for k, p in zip(others, holm([results[k][j]["mcnemar_p"] for k in others])):
            results[k][j]["mcnemar_p_holm"] = p


def _flags(runs: Optional[List[dict]], s: ScoredSet) -> Optional[List[List[int]]]:
    """Each seed's hallucination flags on greedy set ``s`` (0-based sentence indices, the
    result's ``hallucination`` -> set -> ``hallucination_flagged``), or None where a run lacks
    them (an older run, or a beam search)."""
    if s.beam != 1 or not runs:
        return None
    flags = [((r.get("hallucination") or {}).get(s.name) or {}).get("hallucination_flagged")
             for r in runs]
    return None if any(f is None for f in flags) else flags


def _family(s: ScoredSet, metric: str, arms, margin: float) -> List[Dict[str, Any]]:
    """``arms``: (label, bootstrap result) of each arm but the reference: their rows, Holm's
    correction across them, the minimum detectable effect and the verdict."""
    family = [{"set": s.label, "slug": s.slug, "setting": label, "metric": metric, **r}
              for label, r in arms]
    for r, p in zip(family, holm([r["p_value"] for r in family])):
        r.update(p_holm=p, mde=min_detectable_effect(r["se"]), margin=margin,
                 verdict=verdict(r["lo"], r["hi"], p, margin, metric in LOWER_BETTER))
    return family


def compare_sets(settings, run_dirs: Dict[str, List[Path]], sets: Sequence[ScoredSet],
                 margin: float, n_samples: int = 1000,
                 results: Optional[Dict[str, List[dict]]] = None) -> List[Dict[str, Any]]:
    """One row per scored set, metric and arm but the reference: the hierarchical bootstrap's
    difference, 95% interval and p-value (:func:`~.stats.hierarchical_bootstrap`), the
    p-value after Holm's correction across the arms of that set and metric, the minimum
    detectable effect and the verdict at ``margin``. Sets a run folder lacks outputs for are
    left out. With ``results`` (each arm's runs, seed by seed as in ``run_dirs``), also the
    greedy hallucination rate (metric ``hallucination``, points, lower is better) on each
    greedy set where every run of the reference and of every arm kept its flags."""
    base = settings[0].label
    rows = []
    for s in sets:
        ref_hyps = _hyps(run_dirs[base], s)
        arms = [(a.label, _hyps(run_dirs[a.label], s)) for a in settings[1:]]
        if ref_hyps is None or any(h is None for _, h in arms):
            continue
        for metric, _ in METRICS:
            rows += _family(s, metric, [(label, hierarchical_bootstrap(
                ref_hyps, h, s.refs, metric, n_samples)) for label, h in arms], margin)
        flags = {a.label: _flags((results or {}).get(a.label), s) for a in settings}
        if all(f is not None for f in flags.values()):
            stats = lambda fs: np.stack([flag_stats(f, len(s.refs)) for f in fs])  # (S, n, 2)
            ref_stats = stats(flags[base])
            rows += _family(s, HALLUCINATION[0], [
                (a.label, bootstrap_stats(ref_stats, stats(flags[a.label]), HALLUCINATION[0],
                                          n_samples)) for a in settings[1:]], margin)
    return rows


def summary_columns(rows: List[Dict[str, Any]], label: str, main: ScoredSet) -> Dict[str, Any]:
    """Setting ``label``'s pooled comparison on ``main`` as columns of the summary CSV
    (``hb_bleu_diff``, ``hb_bleu_lo``, ..., ``hb_exact_match_verdict``); the reference arm's
    are a difference of 0 and the verdict ``reference``."""
    out: Dict[str, Any] = {}
    for metric, _ in METRICS:
        r = next((r for r in rows if r["set"] == main.label and r["setting"] == label
                  and r["metric"] == metric), None)
        r = r or {"diff": 0.0, "lo": 0.0, "hi": 0.0, "p_value": 1.0, "p_holm": 1.0, "se": 0.0,
                  "mde": 0.0, "verdict": "reference"}
        out.update({f"hb_{metric}_{k}": r[k] for k in ("diff", "lo", "hi", "p_value", "p_holm",
                                                       "mde", "verdict")})
    return out


def csv_rows(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """``rows`` for comparisons.csv: the seeds' differences as one ``;``-separated column."""
    return [{**{k: v for k, v in r.items() if k not in ("slug", "per_seed")},
             "per_seed": ";".join(f"{x:.4f}" for x in r["per_seed"])} for r in rows]


def _verdict_cell(r: Dict[str, Any], unit: str) -> str:
    """The verdict; next to any that is not better/worse, the minimum detectable effect."""
    if r["verdict"] in ("better", "worse"):
        return r["verdict"]
    return f"{r['verdict']} (minimum detectable effect {r['mde']:.2f} {unit})"


def _diff_cell(r: Dict[str, Any]) -> str:
    return f"{r['diff']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}]"


def _sig_cell(r: Dict[str, Any]) -> str:
    """The Holm-corrected p-value first, the uncorrected one after it."""
    return f"p_Holm {r['p_holm']:.3f} (p {r['p_value']:.3f})"


def main_table(rows: List[Dict[str, Any]], pooled: List[Dict[str, Any]], main: ScoredSet,
               seeds: int) -> str:
    """The headline: one row per setting, nine columns (the rest is in results.csv): BLEU on
    ``main``, its pooled difference from the first setting with the 95% interval, the
    corrected significance, the verdict and the minimum detectable effect, exact match and
    the validation gap."""
    def cell(row, key, fmt):
        return fmt.format(row[key]) + (f" ± {fmt.format(row[key + '_std'])}" if seeds > 1 else "")

    ref = rows[0]["setting"]
    head = ["setting", "mean ratio", f"BLEU ({main.label})", f"ΔBLEU vs {ref} [95% CI]",
            "significance", "verdict", "minimum detectable effect", "exact %", "gap"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * 8) + "|"]
    for i, row in enumerate(rows):
        r = next((r for r in pooled if r["set"] == main.label and r["metric"] == "bleu"
                  and r["setting"] == row["setting"]), None)
        if i == 0 or r is None:
            comp = ["(reference)" if i == 0 else "(no outputs)", "", "", ""]
        else:
            comp = [_diff_cell(r), _sig_cell(r), r["verdict"], f"{r['mde']:.2f} BLEU"]
        lines.append("| " + " | ".join([row["setting"], f"{row['ratio_mean']:.2f}",
                                         cell(row, "bleu", "{:.2f}"), *comp,
                                         cell(row, "exact_match", "{:.1f}"),
                                         cell(row, "gap", "{:.3f}")]) + " |")
    return "\n".join(lines)


def comparisons_table(pooled: List[Dict[str, Any]], results: Dict[str, List[dict]],
                      main: ScoredSet) -> str:
    """Every scored set and arm: per metric the pooled difference [95% CI], the corrected
    p-value and the verdict (with the minimum detectable effect where it is not better or
    worse); and the runs whose McNemar test on ``main`` (Holm within the seed) finds exact
    match different. A hallucination column where any set has that comparison ("-" where a
    set has not: older runs, beam search)."""
    keys = list(dict.fromkeys((r["set"], r["setting"]) for r in pooled))
    metrics = list(metrics_of(pooled))
    head = ["set", "setting"] + [f"Δ{t} [95% CI], significance: verdict" for _, t in metrics]
    head.append(f"McNemar p_Holm < 0.05 ({main.label})")
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(metrics) + 1)) + "|"]
    for set_label, setting in keys:
        cells = [set_label, setting]
        for metric, title in metrics:
            r = next((r for r in pooled if (r["set"], r["setting"], r["metric"])
                      == (set_label, setting, metric)), None)
            unit = "points" if metric in ("exact_match", "hallucination") else title
            cells.append("-" if r is None else
                         f"{_diff_cell(r)}, {_sig_cell(r)}: {_verdict_cell(r, unit)}")
        cells.append(mcnemar_cell(results.get(setting, [])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metrics_of(rows: List[Dict[str, Any]]):
    """:data:`METRICS`, and :data:`HALLUCINATION` where ``rows`` compare it."""
    return METRICS + ((HALLUCINATION,) if any(r["metric"] == HALLUCINATION[0] for r in rows)
                      else ())


def mcnemar_cell(runs: List[dict]) -> str:
    """In how many seeds McNemar's test (Holm-corrected) finds the arm's exact match better or
    worse than the reference's (``mcnemar_c`` > ``mcnemar_b``: better): "2 better, 3 worse of
    5 seeds", "0 of 5 seeds"."""
    sig = [x for x in runs if x.get("mcnemar_p_holm", 1.0) < 0.05]
    better = sum(1 for x in sig if x["mcnemar_c"] > x["mcnemar_b"])
    words = [f"{n} {w}" for n, w in ((better, "better"), (len(sig) - better, "worse")) if n]
    return f"{', '.join(words) or '0'} of {len(runs)} seeds"


def report_sections(pooled: List[Dict[str, Any]], results: Dict[str, List[dict]],
                    main: ScoredSet, reference: str, margin: float) -> Dict[str, str]:
    """results.md's text on the pooled comparison: ``headline_note``, under the main table,
    and ``sets``, the section with every scored set (:func:`comparisons_table`)."""
    note = f"""The headline, pooled over seeds and test sentences: "ΔBLEU [95% CI]", the BLEU
difference from the first setting (each seed's run against the first setting's run with the same
seed, averaged over seeds) with a 95% interval from a hierarchical bootstrap (1,000 resamples:
the seeds with replacement, then the test sentences of each drawn seed, the same for both arms),
which carries the seed-to-seed and the test-set variance; "significance", its two-sided p-value
from the same resamples after Holm's correction across the settings ("p_Holm"), the uncorrected
one in brackets; "verdict", better or worse (the interval excludes 0 and p_Holm < 0.05),
equivalent (the interval lies within ±{margin:g}, the --margin), else undetermined; "minimum
detectable effect", the smallest true difference this design detects with 80% power at alpha
0.05 at the measured variance and number of seeds, 2.80 x the bootstrap's standard error (a "no
difference" smaller than it says nothing); "exact %" and "gap" (validation loss free-running
minus teacher-forced), mean ± standard deviation over seeds. Every other column is in
results.csv (the supplementary table, below as "All columns"; the pooled columns start with
`hb_`)."""
    table = (comparisons_table(pooled, results, main) if pooled else
             "(one setting: nothing to compare)")
    sets = f"""## Each setting against {reference}, on every scored set

{table}

The same hierarchical bootstrap, Holm's correction across the settings of each set and metric,
and the verdict (with the minimum detectable effect next to every verdict that is not better or
worse) for BLEU, chrF and exact match (in points), on each scored set, greedy and at each beam
size, and for the greedy hallucination rate (in points; lower is better, so a negative
difference is "better"; only on the sets where every run kept which sentences it flags)
(every row in comparisons.csv, with each seed's difference; forest-SET.png plots them:
each seed's difference a dot, the pooled interval a bar, the ±margin band shaded). "McNemar": the
seeds in which McNemar's exact test of exact match on the {main.label} set (the sentences
only one of the two runs gets right) is significant after Holm's correction across the
settings of that seed (its discordant counts b, c and p-values are in runs.csv, `mcnemar_*`)."""
    return {"headline_note": note, "sets": sets}
