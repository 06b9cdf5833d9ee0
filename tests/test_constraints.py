"""Forced prefixes, no repeated n-grams and the coverage penalty, in greedy search, sampling and
beam search, batched, with both layer implementations."""

import pytest
import torch

from conftest import half_trained
from seq2seq.decoding.constraints import Constraints, coverage_penalty, repeated_ngram_ends
from seq2seq.decoding.search import beam_search, gnmt_length_penalty, greedy
from seq2seq.decoding.sampling import Sampler, sample_keys


def has_repeated_ngram(tokens, n):
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


def outputs(model, x, rules, **kw):
    """Greedy, sampled and beam outputs of a batch under ``rules``."""
    pick = Sampler(sample_keys(7, range(len(x.src))), temperature=1.5)
    return {"greedy": greedy(model, x.src, x.src_len, constraints=rules, **kw).hyps,
            "sample": greedy(model, x.src, x.src_len, constraints=rules, pick=pick, **kw).hyps,
            "beam": [h.tokens for s in beam_search(model, x.src, x.src_len, beam=3, n_best=3,
                                                   constraints=rules, **kw) for h in s]}


@pytest.fixture(scope="module")
def untrained():
    """An untrained model repeats itself a lot (and rarely says EOS)."""
    return half_trained(seed=4, steps=2)


def test_repeated_ngram_ends_by_hand():
    history = torch.tensor([[5, 6, 7, 5, 6], [5, 5, 5, 5, 5]])
    banned = repeated_ngram_ends(history, 3, 10)  # suffixes (5, 6) and (5, 5)
    assert banned[0].nonzero().squeeze(1).tolist() == [7]  # 5 6 7 is there: no second 7
    assert banned[1].nonzero().squeeze(1).tolist() == [5]
    assert repeated_ngram_ends(history, 1, 10)[0].nonzero().squeeze(1).tolist() == [5, 6, 7]
    assert not repeated_ngram_ends(history[:, :2], 3, 10).any()  # no complete 3-gram yet


@pytest.mark.parametrize("impl", ["fused", "manual"])
def test_no_output_repeats_a_bigram(untrained, impl):
    model, x = half_trained(seed=4, steps=2, impl=impl)
    before = outputs(model, x, None, max_len_b=20)
    assert all(any(has_repeated_ngram(h, 2) for h in hyps) for hyps in before.values())
    after = outputs(model, x, Constraints.make(no_repeat_ngram=2), max_len_b=20)
    for kind, hyps in after.items():
        assert not [h for h in hyps if has_repeated_ngram(h, 2)], kind
        assert any(len(h) > 8 for h in hyps), kind  # long enough for the test to mean something


@pytest.mark.parametrize("impl", ["fused", "manual"])
def test_a_prefix_is_always_respected(impl):
    model, x = half_trained(impl=impl)
    g = torch.Generator().manual_seed(1)
    prefixes = [torch.randint(4, 12, (int(torch.randint(0, 6, (1,), generator=g)),),
                              generator=g).tolist() for _ in range(len(x.src))]
    prefixes[0] = [7] * 30  # longer than the length limit: the limit gives way
    prefixes[1] = [5, 5, 5]  # a repeated unigram, with --no-repeat-ngram 1: the prefix wins
    for rules in (Constraints.make(prefixes), Constraints.make(prefixes, no_repeat_ngram=1)):
        for kind, hyps in outputs(model, x, rules).items():
            per_sentence = 3 if kind == "beam" else 1
            for i, h in enumerate(hyps):
                p = prefixes[i // per_sentence]
                assert h[:len(p)] == p, (kind, i)
    free = greedy(model, x.src, x.src_len).hyps
    forced = greedy(model, x.src, x.src_len, constraints=Constraints.make(
        [h[:2] for h in free])).hyps
    assert forced == free  # forcing what greedy says anyway changes nothing


def test_prefixes_batched_equal_one_at_a_time():
    model, x = half_trained()
    prefixes = [[5, 6][:i % 3] for i in range(len(x.src))]
    rules = Constraints.make(prefixes, no_repeat_ngram=2)
    batched = beam_search(model, x.src, x.src_len, beam=3, constraints=rules)
    for i in range(6):
        n = int(x.src_len[i])
        alone = beam_search(model, x.src[i:i + 1, :n], x.src_len[i:i + 1], beam=3,
                            constraints=Constraints.make([prefixes[i]], no_repeat_ngram=2))
        assert alone[0][0].tokens == batched[i][0].tokens


def test_coverage_penalty_is_zero_when_every_word_is_covered():
    pad = torch.tensor([[False, False, True]])
    assert float(coverage_penalty(torch.tensor([[1.0, 2.5, 0.0]]), pad, 0.4)) == 0.0
    cp = float(coverage_penalty(torch.tensor([[0.5, 1.0, 0.0]]), pad, 0.4))
    assert cp == pytest.approx(0.4 * torch.log(torch.tensor(0.5)).item())


def test_beam_scores_with_coverage_penalty():
    model, x = half_trained()
    plain = beam_search(model, x.src, x.src_len, beam=4, n_best=4, coverage=0.0)
    cov = beam_search(model, x.src, x.src_len, beam=4, n_best=4, coverage=1.0)
    changed = 0
    for p, c in zip(plain, cov):
        for h in c:  # score = log P / lp + cp, cp <= 0
            lp = float(gnmt_length_penalty(torch.tensor(len(h.tokens) + 1), 1.0))
            assert h.score <= h.log_prob / lp + 1e-6
        changed += [h.tokens for h in p] != [h.tokens for h in c]
    assert changed > 0  # the penalty re-ranks some n-best lists
