"""The comparison's pooled statistics: the hierarchical bootstrap (seeds, then sentences),
McNemar's exact test, the minimum detectable effect, the verdicts, and their wiring over run
folders (Holm across arms)."""

import random
from types import SimpleNamespace

import pytest

from seq2seq.compare.pooled import ScoredSet, compare_sets, hyp_file, mcnemar_runs
from seq2seq.compare.stats import (
    hierarchical_bootstrap,
    holm,
    mcnemar,
    min_detectable_effect,
    verdict,
)

REFS = [f"w{i} x{i % 7} y{i % 5} z{i % 3}" for i in range(400)]


def outputs(n_right: int, seed: int):
    """Outputs on REFS with exactly ``n_right`` of them right (which ones: by ``seed``)."""
    right = set(random.Random(seed).sample(range(len(REFS)), n_right))
    return [r if i in right else r.rsplit(" ", 1)[0] + " q" for i, r in enumerate(REFS)]


def test_a_known_difference_is_found_and_covered():
    # per seed the system gets 230, 240, 250, 240 of 400 right, the baseline 200: a true
    # difference of exactly 10 points of exact match
    base = [outputs(200, j) for j in range(4)]
    system = [outputs(n, 100 + j) for j, n in enumerate((230, 240, 250, 240))]
    r = hierarchical_bootstrap(base, system, REFS, "exact_match")
    assert r["diff"] == pytest.approx(10.0) and r["per_seed"] == pytest.approx([7.5, 10, 12.5, 10])
    assert 0 < r["lo"] < 10.0 < r["hi"] and r["p_value"] < 0.05 and r["seeds"] == 4
    for metric in ("bleu", "chrf"):  # more right outputs: higher BLEU and chrF too
        m = hierarchical_bootstrap(base, system, REFS, metric)
        assert 0 < m["lo"] <= m["diff"] <= m["hi"] and m["p_value"] < 0.05


def test_arms_alike_give_an_interval_around_zero():
    base = [outputs(200, j) for j in range(4)]
    same = hierarchical_bootstrap(base, base, REFS, "bleu")
    assert (same["lo"], same["diff"], same["hi"], same["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    # other outputs from the same distribution (the seeds' outputs shifted by one)
    other = [outputs(200, 50 + j) for j in range(4)]
    for metric in ("bleu", "chrf", "exact_match"):
        r = hierarchical_bootstrap(base, other, REFS, metric)
        assert r["lo"] < 0 < r["hi"] and r["p_value"] > 0.05


def test_the_interval_carries_the_seed_variance():
    """Seeds that disagree widen the pooled interval beyond any one seed's test-set spread,
    and it narrows as seeds are added (so does the minimum detectable effect)."""
    def arms(n_seeds):
        pattern = (200, 260, 230)  # the system's right outputs per seed: +0, +15, +7.5 points
        base = [outputs(200, j) for j in range(n_seeds)]
        system = [outputs(pattern[j % 3], 100 + j) for j in range(n_seeds)]
        return hierarchical_bootstrap(base, system, REFS, "exact_match")

    three, twelve = arms(3), arms(12)
    assert three["hi"] - three["lo"] > 10.0  # the seeds range over 15 points
    assert min_detectable_effect(twelve["se"]) < 0.7 * min_detectable_effect(three["se"])
    assert min_detectable_effect(1.0) == pytest.approx(1.96 + 0.8416, abs=1e-3)


def test_mcnemar_against_hand_computed_tables():
    def pairs(b, c, both=5, neither=3):
        base = [1] * b + [0] * c + [1] * both + [0] * neither
        system = [0] * b + [1] * c + [1] * both + [0] * neither
        return base, system

    r = mcnemar(*pairs(10, 2))  # 2 * (1 + 12 + 66) / 4096
    assert (r["mcnemar_b"], r["mcnemar_c"]) == (10, 2)
    assert r["mcnemar_p"] == pytest.approx(0.0386, abs=1e-4)
    assert mcnemar(*pairs(2, 10))["mcnemar_p"] == r["mcnemar_p"]
    assert mcnemar(*pairs(0, 6))["mcnemar_p"] == pytest.approx(2 / 64)
    assert mcnemar(*pairs(5, 5))["mcnemar_p"] == 1.0
    assert mcnemar(*pairs(0, 0))["mcnemar_p"] == 1.0  # no discordant pair
    assert mcnemar(*pairs(600, 400))["mcnemar_p"] < 1e-9  # large counts: exact integers


@pytest.mark.parametrize("lo, hi, p_holm, word", [
    (0.5, 1.5, 0.01, "better"), (-2.0, -0.5, 0.01, "worse"),
    (-0.5, 0.5, 0.9, "equivalent"), (-0.5, 1.5, 0.3, "undetermined"),
    (0.1, 0.9, 0.06, "equivalent"),  # excludes 0, but not after Holm's correction
    (0.1, 1.9, 0.06, "undetermined"), (-3.0, 3.0, 1.0, "undetermined"),
])
def test_verdict_words(lo, hi, p_holm, word):
    assert verdict(lo, hi, p_holm, margin=1.0) == word


def test_pooled_comparison_over_run_folders_holm_across_arms(tmp_path):
    """Three arms against a reference, two seeds, from hyp files as the runs write them: Holm
    within each set and metric (the pooled test) and within each seed (McNemar)."""
    labels = ["ref", "up", "same", "down"]
    right = {"ref": 200, "up": 260, "same": 200, "down": 150}
    run_dirs = {a: [tmp_path / a / f"seed{j}" for j in range(2)] for a in labels}
    for a in labels:
        for j, d in enumerate(run_dirs[a]):
            d.mkdir(parents=True)
            hyps = outputs(right[a], j if a in ("ref", "same") else 10 * len(a) + j)
            (d / hyp_file("test", 1)).write_text("".join(h + "\n" for h in hyps))
    settings = [SimpleNamespace(label=a) for a in labels]
    sets = [ScoredSet("test", 1, REFS), ScoredSet("test", 4, REFS)]  # no beam-4 outputs
    rows = compare_sets(settings, run_dirs, sets, margin=1.0, n_samples=400)
    assert {r["set"] for r in rows} == {"test"}  # a set the runs lack is left out
    for metric in ("bleu", "chrf", "exact_match"):
        family = [r for r in rows if r["metric"] == metric]
        assert [r["setting"] for r in family] == ["up", "same", "down"]
        assert [r["p_holm"] for r in family] == holm([r["p_value"] for r in family])
        assert [r["verdict"] for r in family] == ["better", "equivalent", "worse"]
        for r in family:
            assert r["mde"] == pytest.approx(min_detectable_effect(r["se"]))

    results = {a: [{} for _ in range(2)] for a in labels}
    mcnemar_runs(settings, results, run_dirs, sets[0])
    for j in range(2):
        ps = [results[a][j]["mcnemar_p"] for a in labels[1:]]
        assert [results[a][j]["mcnemar_p_holm"] for a in labels[1:]] == holm(ps)
        assert results["same"][j]["mcnemar_p"] == 1.0  # the same outputs
        assert results["up"][j]["mcnemar_c"] > results["up"][j]["mcnemar_b"]
        assert results["up"][j]["mcnemar_p_holm"] < 0.05


def test_the_mcnemar_cell_says_which_way_each_significant_seed_went():
    """An arm better in two seeds and worse in three is not "significant in 5 of 5"."""
    from seq2seq.compare.pooled import mcnemar_cell

    run = lambda b, c, p: {"mcnemar_b": b, "mcnemar_c": c, "mcnemar_p_holm": p}
    runs = [run(113, 14, 0.0), run(51, 25, 0.007), run(97, 167, 0.0), run(94, 129, 0.02),
            run(10, 12, 0.8)]
    assert mcnemar_cell(runs) == "2 better, 2 worse of 5 seeds"
    assert mcnemar_cell(runs[:2]) == "2 worse of 2 seeds"
    assert mcnemar_cell(runs[4:]) == "0 of 1 seeds"


def test_a_lower_hallucination_rate_is_better_and_runs_without_flags_are_skipped(tmp_path):
    """The reference flags 80 of 400 sentences per seed, "fewer" 20, "more" 140: differences
    of -15 and +15 points, verdicts better and worse (lower is better); a set where one run
    kept no flags (an older run) and a beam search get no hallucination rows."""
    labels = ["ref", "fewer", "more"]
    flagged = {"ref": 80, "fewer": 20, "more": 140}
    run_dirs = {a: [tmp_path / a / f"seed{j}" for j in range(2)] for a in labels}
    results = {}
    for a in labels:
        results[a] = []
        for j, d in enumerate(run_dirs[a]):
            d.mkdir(parents=True)
            for name in ("test", "old"):
                (d / hyp_file(name, 1)).write_text("".join(r + "\n" for r in REFS))
            (d / hyp_file("test", 4)).write_text("".join(r + "\n" for r in REFS))
            flags = sorted(random.Random(10 * j + len(a)).sample(range(len(REFS)), flagged[a]))
            old = {} if (a, j) == ("more", 1) else {"hallucination_flagged": flags}
            results[a].append({"hallucination": {"test": {"hallucination_rate": 1.0,
                                                          "hallucination_flagged": flags},
                                                 "old": {"hallucination_rate": 1.0, **old}}})
    settings = [SimpleNamespace(label=a) for a in labels]
    sets = [ScoredSet("test", 1, REFS), ScoredSet("test", 4, REFS), ScoredSet("old", 1, REFS)]
    rows = compare_sets(settings, run_dirs, sets, margin=1.0, n_samples=400, results=results)
    hall = [r for r in rows if r["metric"] == "hallucination"]
    assert {r["set"] for r in hall} == {"test"}  # not beam 4, not the set with an old run
    assert [r["setting"] for r in hall] == ["fewer", "more"]
    assert [r["diff"] for r in hall] == pytest.approx([-15.0, 15.0])
    assert [r["verdict"] for r in hall] == ["better", "worse"]
    assert hall[0]["hi"] < 0 < hall[1]["lo"]
    assert [r["p_holm"] for r in hall] == holm([r["p_value"] for r in hall])
    # without results (or on identical outputs) the text metrics are unchanged
    assert [r for r in rows if r["metric"] != "hallucination"] == compare_sets(
        settings, run_dirs, sets, margin=1.0, n_samples=400)
    from seq2seq.compare.pooled import comparisons_table
    table = comparisons_table(rows, {}, sets[0])
    assert "Δhallucination %" in table.splitlines()[0]
    assert all(line.count("|") == table.splitlines()[0].count("|") for line in table.splitlines())


@pytest.mark.parametrize("lo, hi, word", [(-3.0, -1.0, "better"), (1.0, 3.0, "worse")])
def test_lower_better_verdict_words(lo, hi, word):
    assert verdict(lo, hi, 0.01, margin=1.0, lower_better=True) == word
