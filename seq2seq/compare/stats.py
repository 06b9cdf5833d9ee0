"""Statistics a reviewer would accept: confidence intervals over seeds, and paired bootstrap
resampling of test outputs against the reference arm (an interval and a p-value from the same
resamples)."""

import math
import statistics
from typing import Dict, Sequence, Tuple

import numpy as np
import sacrebleu

# two-sided 95% quantiles of Student's t by degrees of freedom (n seeds - 1)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
         17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042}


def mean_std_ci(xs: Sequence[float]) -> Tuple[float, float, float]:
    """Mean, sample standard deviation and the half-width of the 95% confidence interval of
    the mean (Student's t; 0 for a single value)."""
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, 0.0, 0.0
    sd = statistics.stdev(xs)
    df = len(xs) - 1
    t = T_975[max(k for k in T_975 if k <= df)]  # between entries: the wider interval
    return m, sd, t * sd / math.sqrt(len(xs))


def paired_bootstrap(baseline: Sequence[str], system: Sequence[str], refs: Sequence[str],
                     n_samples: int = 1000, seed: int = 12345) -> Dict[str, float]:
    """BLEU of ``system`` minus BLEU of ``baseline`` on the same test set, with its 95%
    interval and a two-sided p-value, both from one set of ``n_samples`` paired resamples.

    Each resample draws sentence indices with replacement (the same indices for both systems,
    as sacreBLEU's and the Moses script's paired bootstrap do) and recomputes both corpus BLEUs
    from their sentence statistics. With ``d`` the sorted differences, the interval is
    ``d[j], d[n - 1 - j]`` for ``j = ceil(0.025 n) - 1`` and the p-value is
    ``2 min(#(d <= 0), #(d >= 0)) / n`` (capped at 1): the interval excludes 0 exactly when
    ``p < 0.05``, so the two can never disagree. ``seed`` seeds numpy's generator (0 is a seed
    like any other). Identical outputs: a difference of 0 with p = 1.
    """
    if list(baseline) == list(system):
        return {"bleu_diff": 0.0, "bleu_diff_lo": 0.0, "bleu_diff_hi": 0.0, "p_value": 1.0}
    bleu = sacrebleu.BLEU()
    base_stats = np.array(bleu._extract_corpus_statistics(list(baseline), [list(refs)]), "f8")
    sys_stats = np.array(bleu._extract_corpus_statistics(list(system), [list(refs)]), "f8")
    score = lambda stats: bleu._compute_score_from_stats(stats.tolist()).score
    observed = score(sys_stats.sum(0)) - score(base_stats.sum(0))
    idx = np.random.default_rng(seed).choice(len(refs), size=(n_samples, len(refs)))
    diffs = np.sort([score(sys_stats[i].sum(0)) - score(base_stats[i].sum(0)) for i in idx])
    j = max(0, math.ceil(0.025 * n_samples) - 1)
    p = 2 * min(int((diffs <= 0).sum()), int((diffs >= 0).sum())) / n_samples
    return {"bleu_diff": float(observed), "bleu_diff_lo": float(diffs[j]),
            "bleu_diff_hi": float(diffs[n_samples - 1 - j]), "p_value": min(1.0, p)}


def holm(p_values: Sequence[float]) -> list:
    """Holm's step-down adjustment of a family of p-values (Holm, 1979): an adjusted value
    below 0.05 keeps the chance of any false "significant" in the family at 5% or less.
    The k-th smallest of m is multiplied by m - k + 1; the running maximum keeps the order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p_values[i]))
        adjusted[i] = running
    return adjusted
