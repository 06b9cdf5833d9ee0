"""Forced decoding: the log-probability of a model's own greedy output is what greedy search
reported, teacher-forced figures are sums of per-token log-probabilities, free running on the
greedy output is teacher forcing, and batches and layer implementations change nothing."""

import math

import pytest
import torch

from conftest import half_trained
from seq2seq.data.batching import collate
from seq2seq.decoding.search import beam_search, greedy
from seq2seq.decoding.ensemble import Ensemble
from seq2seq.decoding.scoring import PairScore, corpus_figures, token_log_probs
from seq2seq.data.tokenizer import EOS


@pytest.fixture(scope="module")
def model_and_batch():
    return half_trained()


def forced(model, x, hyps, free_running=False):
    b = collate(x.src.tolist(), hyps, range(len(hyps)))
    return token_log_probs(model, x.src, x.src_len, b.tgt_in, b.tgt_out, free_running)


@pytest.mark.parametrize("impl", ["fused", "manual"])
def test_score_of_greedy_output_is_what_greedy_reported(impl):
    model, x = half_trained(impl=impl)
    g = greedy(model, x.src, x.src_len, max_len_b=30, log_probs=True)
    assert all(len(h) < 30 for h in g.hyps)  # each said EOS, which both count
    assert forced(model, x, g.hyps).sum(1).tolist() == pytest.approx(g.log_probs, abs=1e-4)
    beams = beam_search(model, x.src, x.src_len, beam=3, max_len_b=30)
    best = [s[0] for s in beams]
    assert forced(model, x, [h.tokens for h in best]).sum(1).tolist() == pytest.approx(
        [h.log_prob for h in best], abs=1e-4)


def test_teacher_forced_is_the_sum_of_per_token_log_probabilities(model_and_batch):
    model, x = model_and_batch
    with torch.no_grad():
        logp = torch.log_softmax(model(x.src, x.src_len, x.tgt_in), -1)  # (B, T, V)
    per_token = logp.gather(2, x.tgt_out.unsqueeze(-1)).squeeze(-1)  # (B, T)
    lp = forced(model, x, [t[t > EOS].tolist() for t in x.tgt_out])
    torch.testing.assert_close(lp, per_token.masked_fill(x.tgt_out == 0, 0.0))
    ens = forced(Ensemble([model, model]), x, [t[t > EOS].tolist() for t in x.tgt_out])
    torch.testing.assert_close(ens, lp, atol=1e-5, rtol=0)


def test_free_running_on_the_greedy_output_is_teacher_forcing(model_and_batch):
    model, x = model_and_batch
    g = greedy(model, x.src, x.src_len, max_len_b=30).hyps
    torch.testing.assert_close(forced(model, x, g, free_running=True), forced(model, x, g),
                               atol=1e-5, rtol=0)
    refs = [t[t > EOS].tolist() for t in x.tgt_out]
    free, tf = forced(model, x, refs, free_running=True), forced(model, x, refs)
    assert float(free.sum()) < float(tf.sum())  # exposure bias: fed its own mistakes


def test_batched_equals_one_pair_at_a_time(model_and_batch):
    model, x = model_and_batch
    refs = [t[t > EOS].tolist() for t in x.tgt_out]
    both = forced(model, x, refs).sum(1), forced(model, x, refs, True).sum(1)
    for i in range(6):
        n = int(x.src_len[i])
        one = x._replace(src=x.src[i:i + 1, :n], src_len=x.src_len[i:i + 1])
        assert float(forced(model, one, [refs[i]]).sum()) == pytest.approx(float(both[0][i]),
                                                                           abs=1e-4)
        assert float(forced(model, one, [refs[i]], True).sum()) == pytest.approx(
            float(both[1][i]), abs=1e-4)


def test_corpus_figures():
    pairs = [PairScore(-2.0, 2), PairScore(-4.0, 3)]
    c = corpus_figures(pairs)
    assert c["tokens"] == 5 and c["log_prob"] == -6.0 and c["per_token"] == -1.2
    assert c["ppl"] == pytest.approx(math.exp(1.2))
    assert pairs[1].per_token == pytest.approx(-4 / 3)
