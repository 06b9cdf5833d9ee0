"""The toy tasks with headroom: commands split by output length (seq2seq.data.toy_headroom,
``toy.commands_length``) and reverse with longer sequences (``reverse_small``)."""

import pytest
from test_toy import execute  # the test suite's independent reading of the commands grammar

from seq2seq.data import toy
from seq2seq.data.toy_headroom import all_commands, length_split


def rows(dd, split):
    return list(zip(dd[split]["src"], dd[split]["tgt"]))


@pytest.fixture(scope="module")
def commands_length():
    return toy.dataset("commands_length", 1)


def test_commands_length_splits_by_output_length_like_scan(commands_length):
    dd = commands_length
    assert list(dd) == ["train", "validation", "test"] and len(dd["validation"]) == 500
    for split in ("train", "validation"):
        assert max(len(t.split()) for t in dd[split]["tgt"]) <= 22, split
    assert min(len(t.split()) for t in dd["test"]["tgt"]) > 22
    srcs = {split: set(dd[split]["src"]) for split in dd}
    assert all(len(srcs[s]) == len(dd[s]) for s in dd)  # no command twice in a split
    assert not srcs["train"] & srcs["validation"] and not srcs["train"] & srcs["test"]
    assert not srcs["validation"] & srcs["test"]
    # the whole grammar, in SCAN's proportions: 16,990 short commands, 3,920 long ones
    assert len(dd["train"]) + len(dd["validation"]) == 16990 and len(dd["test"]) == 3920


def test_commands_length_targets_follow_the_grammar(commands_length):
    for split in commands_length:
        for src, tgt in rows(commands_length, split)[::7]:
            assert tgt.split() == execute(src), src
    # the same commands and targets as the random split's sampler draws
    every = dict(all_commands(toy.command_phrases()))
    assert len(every) == 20910
    for src, tgt in rows(toy.commands(seed=5, train_size=500, valid_size=50, test_size=50),
                         "train"):
        assert every[src] == tgt


def test_commands_length_is_deterministic_given_the_seed(commands_length):
    again, other = toy.commands_length(seed=1), toy.commands_length(seed=2)
    for split in commands_length:
        assert commands_length[split].to_dict() == again[split].to_dict()
    assert list(commands_length["validation"]["src"]) != list(other["validation"]["src"])
    assert sorted(commands_length["test"]["src"]) == sorted(other["test"]["src"])


def test_length_split_refuses_a_limit_that_leaves_a_split_empty():
    examples = [("a", "x"), ("b", "x y"), ("c", "x y z")]
    with pytest.raises(ValueError, match="3 short and 0 long"):
        length_split(examples, max_train_len=3, valid_size=1, seed=1)
    with pytest.raises(ValueError, match="1 short and 2 long"):
        length_split(examples, max_train_len=1, valid_size=1, seed=1)
    dd = length_split(list(reversed(examples)), max_train_len=2, valid_size=1, seed=1)
    assert list(dd["test"]["src"]) == ["c"]
    assert sorted(list(dd["train"]["src"]) + list(dd["validation"]["src"])) == ["a", "b"]


def test_reverse_small_lengths_alphabet_and_disjoint_splits():
    dd = toy.dataset("reverse_small", 1)
    lo, hi = toy.REVERSE_SMALL["min_len"], toy.REVERSE_SMALL["max_len"]
    alphabet = set(toy.symbols(20))
    seen = set()
    for split, n in zip(dd, (20000, 500, 1000)):
        srcs = set(dd[split]["src"])
        assert len(dd[split]) == len(srcs) == n and not srcs & seen, split
        seen |= srcs
        lengths = set()
        for src, tgt in rows(dd, split):
            assert tgt.split() == src.split()[::-1] and set(src.split()) <= alphabet
            lengths.add(len(src.split()))
        assert min(lengths) >= lo and max(lengths) <= hi
    assert max(len(s.split()) for s in dd["train"]["src"]) == hi > 15  # longer than reverse's
    assert dd["train"].to_dict() == toy.dataset("reverse_small", 1)["train"].to_dict()
    assert list(dd["train"]["src"]) != list(toy.dataset("reverse_small", 2)["train"]["src"])
