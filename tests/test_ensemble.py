"""Ensembles: one model is itself, a model with itself is that model, the mean is normalized,
batching and layer implementations do not change what an ensemble says, vocabularies must match."""

import pytest
import torch

from conftest import half_trained
from seq2seq.decoding.search import beam_search, greedy
from seq2seq.decoding.ensemble import Ensemble, check_vocabularies
from seq2seq.errors import UserError


@pytest.fixture(scope="module")
def models():
    a, batch = half_trained(seed=3)
    b, _ = half_trained(seed=5, steps=20)
    return a, b, batch


def test_an_ensemble_of_one_is_the_model(models):
    a, _, x = models
    g, e = greedy(a, x.src, x.src_len, log_probs=True), greedy(Ensemble([a]), x.src, x.src_len,
                                                              log_probs=True)
    assert g == e
    assert beam_search(a, x.src, x.src_len, beam=3, n_best=2) == \
        beam_search(Ensemble([a]), x.src, x.src_len, beam=3, n_best=2)


def test_an_ensemble_of_a_model_with_itself_is_the_model(models):
    a, _, x = models
    one = greedy(a, x.src, x.src_len, log_probs=True)
    two = greedy(Ensemble([a, a]), x.src, x.src_len, log_probs=True)
    assert two.hyps == one.hyps
    assert two.log_probs == pytest.approx(one.log_probs, abs=1e-4)
    b1 = beam_search(a, x.src, x.src_len, beam=3, n_best=2)
    b2 = beam_search(Ensemble([a, a]), x.src, x.src_len, beam=3, n_best=2)
    assert [[h.tokens for h in s] for s in b1] == [[h.tokens for h in s] for s in b2]
    for s1, s2 in zip(b1, b2):
        assert [h.log_prob for h in s1] == pytest.approx([h.log_prob for h in s2], abs=1e-4)


def test_each_step_is_the_normalized_mean_of_the_log_probabilities(models):
    a, b, x = models
    ens = Ensemble([a, b])
    state = ens.start(x.src, x.src_len)
    y = torch.full((x.src.size(0),), 2)
    with torch.no_grad():
        scores, _, weights = ens.step(y, state)
        logp = torch.log_softmax(scores, -1)
        sa = a.decoder.step(y, a.decoder.start(a.encoder(x.src, x.src_len)),
                            a.encoder(x.src, x.src_len))[0]
        sb = b.decoder.step(y, b.decoder.start(b.encoder(x.src, x.src_len)),
                            b.encoder(x.src, x.src_len))[0]
    mean = (torch.log_softmax(sa, -1) + torch.log_softmax(sb, -1)) / 2
    torch.testing.assert_close(logp, torch.log_softmax(mean, -1), atol=1e-5, rtol=0)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(len(y)), atol=1e-5)
    assert torch.allclose(weights.sum(-1), torch.ones(len(y)), atol=1e-5)  # mean attention


def test_two_models_batched_equals_one_sentence_at_a_time(models):
    a, b, x = models
    ens = Ensemble([a, b])
    batched = greedy(ens, x.src, x.src_len, log_probs=True)
    beams = beam_search(ens, x.src, x.src_len, beam=3)
    differs = 0
    for i in range(8):
        n = int(x.src_len[i])
        alone = greedy(ens, x.src[i:i + 1, :n], x.src_len[i:i + 1], log_probs=True)
        assert alone.hyps[0] == batched.hyps[i]
        assert alone.log_probs[0] == pytest.approx(batched.log_probs[i], abs=1e-4)
        beam_alone = beam_search(ens, x.src[i:i + 1, :n], x.src_len[i:i + 1], beam=3)
        assert beam_alone[0][0].tokens == beams[i][0].tokens
        differs += batched.hyps[i] != greedy(a, x.src[i:i + 1, :n], x.src_len[i:i + 1]).hyps[0]
    assert differs > 0  # the second model changes some outputs


def test_manual_and_fused_ensembles_agree():
    fused = [half_trained(seed=s)[0] for s in (3, 5)]
    manual = [half_trained(seed=s, impl="manual")[0] for s in (3, 5)]
    _, x = half_trained(seed=3, steps=0)
    f = greedy(Ensemble(fused), x.src, x.src_len, log_probs=True)
    m = greedy(Ensemble(manual), x.src, x.src_len, log_probs=True)
    assert f.hyps == m.hyps
    assert f.log_probs == pytest.approx(m.log_probs, abs=1e-4)
    bf = beam_search(Ensemble(fused), x.src, x.src_len, beam=3)
    bm = beam_search(Ensemble(manual), x.src, x.src_len, beam=3)
    assert [s[0].tokens for s in bf] == [s[0].tokens for s in bm]


def test_different_vocabularies_are_refused():
    from seq2seq.config import TokenizerConfig
    from seq2seq.data.tokenizer import Tokenizer, train_model

    one = Tokenizer(train_model(["a b c d e f"] * 20, TokenizerConfig(vocab_size=300)))
    other = Tokenizer(train_model(["x y z w v u"] * 20, TokenizerConfig(vocab_size=300)))
    check_vocabularies(["a.pt", "b.pt"], [one, Tokenizer(one.src_proto)])  # the same: fine
    with pytest.raises(UserError, match="different vocabulary .*same tokenizer"):
        check_vocabularies(["a.pt", "b.pt"], [one, other])
