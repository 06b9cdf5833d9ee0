"""Statistics a reviewer would accept: confidence intervals over seeds, and paired bootstrap
resampling of test outputs (sacreBLEU's implementation) against the reference arm."""

import math
import statistics
from typing import Dict, Sequence, Tuple

import numpy as np
import sacrebleu
from sacrebleu.significance import PairedTest

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
    interval and the p-value of sacreBLEU's paired bootstrap test (``n_samples`` resamples).

    The p-value is sacreBLEU's (``PairedTest``, ``test_type="bs"``, the Moses script's method);
    the interval is the 2.5 and 97.5 percentiles of the difference over resamples drawn the
    same way (sentence indices with replacement, the same indices for both systems). Identical
    outputs: a difference of 0 with p = 1.
    """
    bleu = sacrebleu.BLEU()
    if list(baseline) == list(system):  # sacreBLEU's test gives p = 1/(n+1) for a tie
        return {"bleu_diff": 0.0, "bleu_diff_lo": 0.0, "bleu_diff_hi": 0.0, "p_value": 1.0}
    test = PairedTest([("baseline", list(baseline)), ("system", list(system))],
                      {"BLEU": bleu}, [list(refs)], test_type="bs", n_samples=n_samples)
    test._seed = seed  # sacreBLEU reads SACREBLEU_SEED (default 12345) into this
    _, scores = test()
    result = scores["BLEU"][1]
    base_stats = np.array(bleu._extract_corpus_statistics(list(baseline), [list(refs)]), "f4")
    sys_stats = np.array(bleu._extract_corpus_statistics(list(system), [list(refs)]), "f4")
    idx = np.random.default_rng(seed).choice(len(refs), size=(n_samples, len(refs)))
    diffs = np.array([bleu._compute_score_from_stats(sys_stats[i].sum(0)).score
                      - bleu._compute_score_from_stats(base_stats[i].sum(0)).score for i in idx])
    base_score = scores["BLEU"][0].score
    return {"bleu_diff": result.score - base_score,
            "bleu_diff_lo": float(np.percentile(diffs, 2.5)),
            "bleu_diff_hi": float(np.percentile(diffs, 97.5)), "p_value": float(result.p_value)}


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
