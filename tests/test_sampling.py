"""Sampling: reproducible from the seed however the lines are batched, top-k 1 is greedy search,
the filters keep what they say, and draws follow the distribution."""

import pytest
import torch

from conftest import half_trained
from seq2seq.decoding.search import greedy
from seq2seq.decoding.sampling import Sampler, sample_keys, uniform


@pytest.fixture(scope="module")
def model_and_batch():
    return half_trained()


def sample(model, x, lines, seed=1, samples=1, max_len_b=10, **kw):
    rows = torch.arange(x.src.size(0)).repeat_interleave(samples)
    pick = Sampler(sample_keys(seed, lines, samples), **kw)
    return greedy(model, x.src[rows], x.src_len[rows], max_len_b=max_len_b, pick=pick,
                  log_probs=True)


@pytest.mark.parametrize("impl", ["fused", "manual"])
def test_top_k_one_is_greedy_search(impl):
    model, x = half_trained(impl=impl)
    g = greedy(model, x.src, x.src_len, log_probs=True)
    s = sample(model, x, range(len(x.src)), top_k=1, temperature=3.0)
    assert s.hyps == g.hyps
    assert s.log_probs == pytest.approx(g.log_probs, abs=1e-5)


def test_the_same_seed_gives_the_same_samples_batched_or_alone(model_and_batch):
    model, x = model_and_batch
    lines = list(range(100, 100 + len(x.src)))
    batched = sample(model, x, lines, seed=5, samples=3, top_p=0.95)
    assert batched == sample(model, x, lines, seed=5, samples=3, top_p=0.95)
    for i in range(6):
        n = int(x.src_len[i])
        one = x._replace(src=x.src[i:i + 1, :n], src_len=x.src_len[i:i + 1])
        alone = sample(model, one, [lines[i]], seed=5, samples=3, top_p=0.95)
        assert alone.hyps == batched.hyps[3 * i:3 * i + 3]
    other = sample(model, x, lines, seed=6, samples=3, top_p=0.95)
    assert other.hyps != batched.hyps  # another seed, other samples
    g = greedy(model, x.src, x.src_len).hyps
    assert sum(h != g[k // 3] for k, h in enumerate(batched.hyps)) > 5  # not greedy search
    assert len({tuple(h) for h in batched.hyps}) > len(x.src)  # samples of a line differ


def test_sample_log_probs_are_the_models(model_and_batch):
    """The reported log-probability is the model's (not the tempered, filtered distribution)."""
    from seq2seq.data.batching import collate
    from seq2seq.decoding.scoring import token_log_probs

    model, x = model_and_batch
    s = sample(model, x, range(len(x.src)), temperature=2.0, top_k=4, max_len_b=40)
    assert all(len(h) < 40 for h in s.hyps)  # each said EOS, which both count
    b = collate(x.src.tolist(), s.hyps, range(len(s.hyps)))
    expected = token_log_probs(model, x.src, x.src_len, b.tgt_in, b.tgt_out).sum(1)
    assert s.log_probs == pytest.approx(expected.tolist(), abs=1e-4)


def test_filters_and_frequencies():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1)  # (R, 4)
    keys = sample_keys(3, range(4000))
    rows = torch.arange(4000)
    freq = torch.bincount(Sampler(keys)(logits, rows, 0), minlength=4).float() / 4000
    assert freq.tolist() == pytest.approx([0.5, 0.3, 0.15, 0.05], abs=0.03)
    assert set(Sampler(keys, top_k=2)(logits, rows, 0).tolist()) == {0, 1}
    assert set(Sampler(keys, top_p=0.8)(logits, rows, 0).tolist()) == {0, 1}  # 0.5 + 0.3
    assert set(Sampler(keys, top_p=0.81)(logits, rows, 0).tolist()) == {0, 1, 2}
    # top-p over the top-k mass renormalized: 0.5 / 0.8 = 0.625 >= 0.6 leaves one token (the
    # raw mass, 0.5 < 0.6, would keep two); over the top 3, 0.5 / 0.95 = 0.53 < 0.6 keeps two
    assert set(Sampler(keys, top_k=2, top_p=0.6)(logits, rows, 0).tolist()) == {0}
    assert set(Sampler(keys, top_k=3, top_p=0.6)(logits, rows, 0).tolist()) == {0, 1}
    hot = torch.bincount(Sampler(keys, temperature=0.25)(logits, rows, 0), minlength=4)
    assert hot[0] > 0.85 * 4000  # a low temperature is nearly greedy
    banned = logits.clone()
    banned[:, 0] = float("-inf")
    assert 0 not in Sampler(keys)(banned, rows, 0).tolist()


def test_uniform_numbers():
    u = uniform(sample_keys(1, range(20000)), 0)
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert float(u.mean()) == pytest.approx(0.5, abs=0.01)
    assert len(set(u.tolist())) > 19900
    assert not torch.equal(u, uniform(sample_keys(1, range(20000)), 1))  # steps differ
