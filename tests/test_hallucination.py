"""The hallucination detector on hand-made outputs: exact on the aligned toy tasks (looping,
overlong, detached; a wrong but plausible output is none of them), and the translation proxy's
thresholds (low sentence chrF and a per-token log-probability strictly above the median)."""

import pytest

from seq2seq.compare.oracle import ORACLE_TASKS
from seq2seq.decoding.hallucination import (EXAMPLES, PROXY_CHRF, format_examples,
                                            format_report, hallucination_report, median,
                                            oracle_output, oracle_task, proxy_flags, toy_kinds)

SRC = "a b c d e f"  # reverse: "f e d c b a"


def test_oracle_outputs_and_the_task_read_from_the_data():
    assert oracle_output("reverse", SRC) == "f e d c b a".split()
    assert oracle_output("length_generalization", "x y") == ["y", "x"]
    assert oracle_output("copy", SRC) == SRC.split()
    assert oracle_output("sort", "37 5 81 5") == ["5", "5", "37", "81"]  # as numbers
    srcs = ["a b c", "d e", "b b a"]
    assert oracle_task(srcs, ["c b a", "e d", "a b b"]) == "reverse"
    assert oracle_task(srcs, srcs) == "copy"
    assert oracle_task(["3 10 2"], ["2 3 10"]) == "sort"
    assert oracle_task(srcs, ["c b a", "e d", "b b a"]) is None  # one pair fits no task
    assert oracle_task(["the cat"], ["die Katze"]) is None  # translation
    assert oracle_task([], []) is None
    with pytest.raises(ValueError):
        oracle_output("dates", "3rd of March 2021")
    for task in ORACLE_TASKS:  # every task the comparison's oracle knows has an output here
        assert sorted(oracle_output(task, "2 10 1")) == sorted(["2", "10", "1"])


@pytest.mark.parametrize("hyp, kinds", [
    ("f e d c b a", []),                           # correct
    ("f e x c b a", []),                           # a substitution: wrong, not a hallucination
    ("f e c d b a", []),                           # a swap
    ("f e c b a", []),                             # a dropped token
    ("f e d d c b a", []),                         # a doubled token
    ("f e d c b x", []),                           # wrong at the end: too little left to judge
    ("", []),                                      # empty: an omission
    ("f e d c b a a a", ["looping"]),              # a token 3 times, the oracle has it once
    ("f e d d d d", ["looping", "detached"]),      # a loop that leaves the oracle's path
    ("f e d e d e d", ["looping", "detached"]),    # a bigram 3 times back to back
    ("f e d c b a a a a a", ["looping", "overlong"]),
    ("f e d c b a b a c", []),                     # 9 tokens = 1.5 x 6: not over the bound
    ("f e d c b a b a c d", ["overlong"]),          # 10 tokens
    ("f e x y z w", ["detached"]),                 # diverges and never returns
    ("f q r s t u v w x y", ["overlong", "detached"]),
])
def test_exact_kinds_on_reverse(hyp, kinds):
    assert toy_kinds("reverse", SRC, hyp) == kinds


def test_a_loop_is_judged_against_the_task_bound():
    src = "5 3 5 5"  # sorted: 3 5 5 5, three 5s back to back are right
    assert toy_kinds("sort", src, "3 5 5 5") == []
    assert toy_kinds("sort", src, "3 5 5 5 5") == ["looping"]


def test_exact_report_counts_each_kind_and_lists_examples():
    srcs = [SRC] * 4
    hyps = ["f e d c b a", "f e d c b a a a", "f e x y z w", "f e x c b a"]
    r = hallucination_report(srcs, [""] * 4, hyps, [None] * 4, "reverse")
    assert all(k.startswith("hallucination") for k in r)
    assert r["hallucination_rate"] == 50.0
    assert (r["hallucination_looping"], r["hallucination_overlong"],
            r["hallucination_detached"]) == (25.0, 0.0, 25.0)
    assert r["hallucination_examples"] == {"looping": [2], "overlong": [], "detached": [3]}
    text = format_examples(r, srcs, [""] * 4, hyps, [None] * 4)
    assert "line 2" in text and "f e d c b a a a" in text and "line 1\n" not in text
    assert "50.00%" in format_report(r)


def test_median():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5


def test_proxy_flags_low_chrf_and_confident_only():
    chrf = [5.0, 5.0, 50.0, 10.0]
    per_token = [-0.1, -2.0, -0.05, -0.5]  # median -0.3
    assert proxy_flags(chrf, per_token) == [True, False, False, False]
    # the thresholds are strict: chrF at the threshold, log-probability at the median
    assert proxy_flags([PROXY_CHRF, 1.0, 1.0], [-0.1, -0.2, -0.3]) == [False, False, False]
    assert proxy_flags([1.0, 1.0, 1.0], [-0.1, -0.2, -0.3]) == [True, False, False]
    # a line not decoded (None) is never flagged and not in the median
    assert proxy_flags([1.0, 1.0, 1.0], [None, -0.2, -0.3]) == [False, True, False]


def test_proxy_report_on_translation():
    refs = ["the cat sits on the mat", "a dog runs in the park", "the sun is shining today",
            "she reads a book"]
    hyps = ["the cat sits on the mat", "quantum fiscal oversight committee",
            "the sun is shining today", "zzz qqq"]
    per_token = [-0.2, -0.1, -0.3, -3.0]  # line 2 confident, line 4 unsure; median -0.25
    r = hallucination_report(refs, refs, hyps, per_token, None)
    assert all(k.startswith("hallucination") for k in r)
    assert "proxy" in r["hallucination_method"] and "hallucination_rate" not in r
    assert r["hallucination_proxy_rate"] == 25.0
    assert r["hallucination_examples"] == {"proxy": [2], "low_chrf_unsure": [4]}
    text = format_examples(r, refs, refs, hyps, per_token)
    assert "quantum fiscal" in text and "chrF" in text
    assert "proxy" in format_report(r)


def test_examples_are_capped():
    n = EXAMPLES + 5
    r = hallucination_report([SRC] * n, [""] * n, ["f e x y z w"] * n, [None] * n, "reverse")
    assert r["hallucination_rate"] == 100.0
    assert len(r["hallucination_examples"]["detached"]) == EXAMPLES
