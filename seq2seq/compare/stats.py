"""Statistics a reviewer would accept: confidence intervals over seeds, and paired bootstrap
resampling of test outputs against the reference arm (an interval and a p-value from the same
resamples); a hierarchical bootstrap over seeds and sentences, the minimum detectable
effect and a verdict; McNemar's exact test."""

import math
import statistics
from typing import Any, Dict, Sequence, Tuple

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
    ``(2 min(#(d <= 0), #(d >= 0)) + 1) / (n + 1)`` (capped at 1; never 0, which no finite
    number of resamples can show): for ``n`` a multiple of 40 (the default 1,000) the interval
    excludes 0 exactly when ``p < 0.05``, so the two cannot disagree. ``seed`` seeds numpy's generator (0 is a seed
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
    p = (2 * min(int((diffs <= 0).sum()), int((diffs >= 0).sum())) + 1) / (n_samples + 1)
    return {"bleu_diff": float(observed), "bleu_diff_lo": float(diffs[j]),
            "bleu_diff_hi": float(diffs[n_samples - 1 - j]), "p_value": min(1.0, p)}


def holm(p_values: Sequence[float]) -> list:
    """Holm's step-down adjustment of a family of p-values (Holm, 1979): an adjusted value
    below 0.05 keeps the chance of any false "significant" in the family at 5% or less.
    The k-th smallest of m is multiplied by m - k + 1; the running maximum keeps the order.
    A NaN (an arm with nothing to test) stays NaN and does not count in m."""
    finite = [i for i, p in enumerate(p_values) if not math.isnan(p)]  # NaN: no test, no say
    m = len(finite)
    order = sorted(finite, key=lambda i: p_values[i])
    adjusted, running = [math.nan] * len(p_values), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p_values[i]))
        adjusted[i] = running
    return adjusted


# -- one interval over seeds and sentences ---------------------------------------------------

#: z_{0.975} + z_{0.80}: a two-sided test at alpha 0.05 with 80% power
Z_POWER = 1.959964 + 0.841621


def sentence_stats(metric: str, hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """``(N, D)`` per-sentence statistics of ``metric`` (``bleu``, ``chrf``, ``exact_match``),
    whose column sums give the corpus score (:func:`corpus_scores`)."""
    if metric == "exact_match":  # as seq2seq.decoding.evaluate.score counts it
        return np.array([[h.strip() == r.strip(), 1.0] for h, r in zip(hyps, refs)], "f8")
    m = {"bleu": sacrebleu.BLEU, "chrf": sacrebleu.CHRF}[metric]()
    return np.array(m._extract_corpus_statistics(list(hyps), [list(refs)]), "f8")


def corpus_scores(metric: str, stats: np.ndarray) -> np.ndarray:
    """``(B, D)`` summed statistics -> ``(B,)`` corpus scores (0-100)."""
    if metric in ("exact_match", "hallucination"):  # rates: [counted, sentences]
        return 100.0 * stats[:, 0] / np.maximum(stats[:, 1], 1.0)
    m = {"bleu": sacrebleu.BLEU, "chrf": sacrebleu.CHRF}[metric]()
    return np.array([m._compute_score_from_stats(s.tolist()).score for s in stats])


def hierarchical_bootstrap(baseline: Sequence[Sequence[str]], system: Sequence[Sequence[str]],
                           refs: Sequence[str], metric: str = "bleu", n_samples: int = 1000,
                           seed: int = 12345) -> Dict[str, Any]:
    """The difference ``system - baseline`` in ``metric``, averaged over seeds, with a 95%
    interval and a two-sided p-value that carry both the seed-to-seed and the test-set
    variance. ``baseline[j]`` and ``system[j]`` are the outputs of seed ``j``'s two runs on
    ``refs``.

    Each resample draws the seeds with replacement, then, for each drawn seed, sentence
    indices with replacement (the same for both arms of that seed), recomputes both corpus
    scores from the summed sentence statistics (BLEU as :func:`paired_bootstrap` does) and
    averages the seeds' differences. Interval and p-value come from the same resamples, as in
    :func:`paired_bootstrap`: the interval excludes 0 exactly when ``p < 0.05``. ``se`` is
    the standard deviation of the resampled differences; ``per_seed``, each seed's difference.
    """
    base = np.stack([sentence_stats(metric, h, refs) for h in baseline])  # (S, n, D)
    sys_ = np.stack([sentence_stats(metric, h, refs) for h in system])  # (S, n, D)
    return bootstrap_stats(base, sys_, metric, n_samples, seed)


def flag_stats(flagged: Sequence[int], n: int) -> np.ndarray:
    """``(n, 2)`` per-sentence statistics of a rate (``hallucination``): ``[flagged, 1]`` per
    sentence, for ``flagged`` the 0-based indices of the sentences counted."""
    out = np.zeros((n, 2))
    out[:, 1] = 1.0
    out[list(flagged), 0] = 1.0
    return out


def bootstrap_stats(base: np.ndarray, sys_: np.ndarray, metric: str, n_samples: int = 1000,
                    seed: int = 12345) -> Dict[str, Any]:
    """:func:`hierarchical_bootstrap` from the per-sentence statistics of each seed's two runs,
    ``base`` and ``sys_``: ``(S, n, D)`` (:func:`sentence_stats`, :func:`flag_stats`)."""
    S, n = base.shape[:2]
    per_seed = corpus_scores(metric, sys_.sum(1)) - corpus_scores(metric, base.sum(1))  # (S,)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(S, size=(n_samples, S))  # (B, S): the seeds drawn by each resample
    diffs = np.zeros(n_samples)
    for k in range(S):  # the k-th seed drawn: fresh sentence weights, the same for both arms
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_samples).astype("f8")  # (B, n)
        for j in range(S):
            rows = np.nonzero(seeds[:, k] == j)[0]
            if len(rows):
                w = weights[rows]
                diffs[rows] += (corpus_scores(metric, w @ sys_[j])
                                - corpus_scores(metric, w @ base[j]))
    diffs = np.sort(diffs / S)
    j = max(0, math.ceil(0.025 * n_samples) - 1)
    p = (2 * min(int((diffs <= 0).sum()), int((diffs >= 0).sum())) + 1) / (n_samples + 1)
    return {"diff": float(per_seed.mean()), "lo": float(diffs[j]),
            "hi": float(diffs[n_samples - 1 - j]), "p_value": min(1.0, p),
            "se": float(diffs.std(ddof=1)) if n_samples > 1 else 0.0,
            "per_seed": per_seed.tolist(), "seeds": S}


def min_detectable_effect(se: float) -> float:
    """The smallest true difference that a two-sided test at alpha 0.05 detects with 80%
    power when the estimate's standard error is ``se`` (here the hierarchical bootstrap's,
    which carries the measured seed and test-set variance and shrinks with more seeds):
    ``MDE = (z_{0.975} + z_{0.80}) * se = 2.80 * se``."""
    return Z_POWER * se


def verdict(lo: float, hi: float, p_holm: float, margin: float,
            lower_better: bool = False) -> str:
    """One word for a difference with 95% interval ``[lo, hi]`` and Holm-adjusted p-value:
    ``better`` / ``worse`` (the interval excludes 0 and ``p_holm < 0.05``; above 0 is better,
    below 0 where ``lower_better``, as for a hallucination rate), ``equivalent``
    (the interval lies within ``±margin``, the user's equivalence margin), else
    ``undetermined`` (the data cannot tell; see the minimum detectable effect)."""
    if p_holm < 0.05 and (lo > 0 or hi < 0):
        return "better" if (lo > 0) != lower_better else "worse"
    if -margin <= lo and hi <= margin:
        return "equivalent"
    return "undetermined"


def mcnemar(baseline_correct: Sequence[bool], system_correct: Sequence[bool]
            ) -> Dict[str, float]:
    """McNemar's exact test of two systems' exact matches on the same sentences: ``b``, the
    sentences only the baseline gets right, ``c``, those only the system gets right; under
    the null each discordant pair is a fair coin, so the two-sided p-value is
    ``min(1, 2 P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)`` (1 without discordant
    pairs). E.g. b = 10, c = 2: p = 2 * 79 / 4096 = 0.0386."""
    pairs = list(zip(baseline_correct, system_correct))
    b = sum(1 for x, y in pairs if x and not y)
    c = sum(1 for x, y in pairs if y and not x)
    m = b + c
    tail = sum(math.comb(m, i) for i in range(min(b, c) + 1))
    return {"mcnemar_b": b, "mcnemar_c": c, "mcnemar_p": min(1.0, 2 * tail / 2 ** m)}
