"""Beam search: batched over sentences and beams, GNMT length normalization, n-best."""

import pytest
import torch

from conftest import fit
from seq2seq.config import ModelConfig
from seq2seq.data.batching import collate
from seq2seq.decoding.search import beam_search, gnmt_length_penalty, greedy
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.data.tokenizer import EOS, PAD

VOCAB = 4 + 8  # reverse sequences of 8 symbols (ids 4..11)


@pytest.fixture(scope="module")
def model_and_batch():
    """A half-trained model: it says EOS, but is unsure enough for beams to differ."""
    g = torch.Generator().manual_seed(3)
    src = [torch.randint(4, VOCAB, (int(torch.randint(3, 9, (1,), generator=g)),),
                         generator=g).tolist() for _ in range(32)]
    batch = collate(src, [s[::-1] for s in src], range(len(src)))
    torch.manual_seed(3)
    model = Seq2Seq.from_config(ModelConfig(cell="gru", embedding_dim=16, hidden_size=32,
                                            dropout=0.0, input_feeding=True), VOCAB, VOCAB, PAD)
    return fit(model, batch, 30).eval(), batch


def log_prob(model, src, src_len, hyp):
    """log P(hyp + EOS | src) by teacher forcing."""
    tgt_in = torch.tensor([[2] + hyp])
    tgt_out = torch.tensor([hyp + [EOS]])
    with torch.no_grad():
        logp = torch.log_softmax(model(src, src_len, tgt_in).float(), -1)  # (1, T, V)
    return float(logp.gather(2, tgt_out.unsqueeze(-1)).sum())


def test_beam_of_one_without_length_penalty_is_greedy(model_and_batch):
    model, b = model_and_batch
    g = greedy(model, b.src, b.src_len).hyps
    beams = beam_search(model, b.src, b.src_len, beam=1, length_penalty=0.0)
    assert [x[0].tokens for x in beams] == g
    assert any(len(h) < 1.5 * int(n) + 10 for h, n in zip(g, b.src_len))  # EOS was said


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_scores_are_normalized_log_probabilities(model_and_batch, alpha):
    model, b = model_and_batch
    beams = beam_search(model, b.src, b.src_len, beam=4, length_penalty=alpha, n_best=3)
    for i, nbest in enumerate(beams[:8]):
        n = int(b.src_len[i])
        scores = [h.score for h in nbest]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in nbest}) == len(nbest)  # distinct hypotheses
        for score, hyp, _ in nbest:
            lp = float(gnmt_length_penalty(torch.tensor(len(hyp) + 1), alpha))
            expected = log_prob(model, b.src[i:i + 1, :n], b.src_len[i:i + 1], hyp) / lp
            assert score == pytest.approx(expected, abs=1e-3)


def test_wider_beam_finds_at_least_as_probable_output(model_and_batch):
    model, b = model_and_batch
    g = greedy(model, b.src, b.src_len).hyps
    beams = beam_search(model, b.src, b.src_len, beam=5, length_penalty=0.0)
    better = 0
    for i, (nb, hyp) in enumerate(zip(beams, g)):
        n = int(b.src_len[i])
        greedy_lp = log_prob(model, b.src[i:i + 1, :n], b.src_len[i:i + 1], hyp)
        assert nb[0][0] >= greedy_lp - 1e-4
        better += nb[0][0] > greedy_lp + 1e-4
    assert better > 0  # the beam is not just greedy search in disguise


def test_batched_equals_one_sentence_at_a_time(model_and_batch):
    model, b = model_and_batch
    batched = beam_search(model, b.src, b.src_len, beam=3, n_best=2)
    for i in range(6):
        n = int(b.src_len[i])
        alone = beam_search(model, b.src[i:i + 1, :n], b.src_len[i:i + 1], beam=3, n_best=2)
        assert [h.tokens for h in alone[0]] == [h.tokens for h in batched[i]]


def test_greedy_attention_maps_fit_the_output_alone_and_batched(model_and_batch):
    """One map row per output token plus one for EOS when it was said; a short length limit
    cuts some sentences off, which must not add a row."""
    model, b = model_and_batch
    hyps, maps, _ = greedy(model, b.src, b.src_len, 1.0, 1, return_attention=True)
    cut = 0
    for i, (h, m) in enumerate(zip(hyps, maps)):
        n = int(b.src_len[i])
        alone, alone_maps, _ = greedy(model, b.src[i:i + 1, :n], b.src_len[i:i + 1], 1.0, 1,
                                      return_attention=True)
        assert alone[0] == h
        assert alone_maps[0].shape == m.shape and m.shape[1] == n
        assert m.shape[0] in (len(h), len(h) + 1)
        cut += m.shape[0] == len(h)
        assert torch.allclose(m.sum(-1), torch.ones(m.shape[0]), atol=1e-5)
    assert cut > 0  # the limit did cut some sentences off


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("V", [12, 8000, 8003, 1000])
def test_blocked_argmax_is_torch_argmax(V, dtype):
    from seq2seq.kernels.argmax import argmax

    g = torch.Generator().manual_seed(V)
    logits = torch.randn(37, V, generator=g)
    logits[0, [3, V - 2]] = 50.0  # a tie: the first index wins, as in torch.argmax
    logits[1, :] = 0.0  # all tied
    logits[2, V // 2:] = 9.0  # ties across blocks
    logits = logits.to(dtype)  # bf16 (--bf16 decoding) rounds many more values into ties
    assert torch.equal(argmax(logits), logits.argmax(-1))
    assert argmax(logits[:0]).shape == (0,)


def unprepacked(model):
    """``model``'s weights in a model whose decoder never prepacks (``prepack=False``)."""
    cfg = ModelConfig(cell="gru", embedding_dim=16, hidden_size=32, dropout=0.0,
                      input_feeding=True)
    other = Seq2Seq.from_config(cfg, VOCAB, VOCAB, PAD, prepack=False)
    other.load_state_dict(model.state_dict())
    return other.to(next(model.parameters()).dtype).eval()


def test_decoding_with_and_without_the_prepacked_projection(model_and_batch):
    from seq2seq.kernels import onednn

    model, b = model_and_batch
    fast = greedy(model, b.src, b.src_len).hyps, beam_search(model, b.src, b.src_len, beam=3)
    with torch.inference_mode():
        assert (model.decoder.projector(8) != model.decoder.project) == \
            onednn.use_prepack(b.src.float())
    assert model.decoder.projector(8) == model.decoder.project  # autograd on: the plain layer
    model = unprepacked(model)
    with torch.inference_mode():
        assert model.decoder.projector(8) == model.decoder.project
    plain = greedy(model, b.src, b.src_len).hyps, beam_search(model, b.src, b.src_len, beam=3)
    assert fast[0] == plain[0]
    assert [[h.tokens for h in x] for x in fast[1]] == [[h.tokens for h in x] for x in plain[1]]
    for x, y in zip(fast[1], plain[1]):
        assert [h.score for h in x] == pytest.approx([h.score for h in y], abs=1e-4)


def test_bf16_decoding_prepacks_the_projection_with_the_same_outputs(model_and_batch):
    """``--bf16``: a bf16 model under autocast projects through oneDNN with its weight
    reordered once (where the ops exist), and decodes exactly as with the plain bf16 layer."""
    from seq2seq.kernels import onednn
    from seq2seq.kernels.device import bf16_weights

    model, b = model_and_batch
    low = bf16_weights(model)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        project = low.decoder.projector(8)
        prepackable = onednn.use_prepack(low.decoder.out.weight, bf16=True)
        assert (project != low.decoder.project) == prepackable
        o = torch.randn(8, low.decoder.out_size).bfloat16()
        assert project(o).dtype == torch.bfloat16
        torch.testing.assert_close(project(o), low.decoder.project(o), rtol=1e-2, atol=1e-2)
        fast = greedy(low, b.src, b.src_len).hyps, beam_search(low, b.src, b.src_len, beam=3)
    with torch.inference_mode():  # float32 weights under bf16 autocast: the plain layer
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert model.decoder.projector(8) == model.decoder.project
    low = unprepacked(low)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert low.decoder.projector(8) == low.decoder.project
        plain = greedy(low, b.src, b.src_len).hyps, beam_search(low, b.src, b.src_len, beam=3)
    assert fast[0] == plain[0]
    assert [[h.tokens for h in x] for x in fast[1]] == [[h.tokens for h in x] for x in plain[1]]


@pytest.mark.parametrize("cell,impl,attention,feeding,tie", [
    ("lstm", "fused", "bahdanau", True, True), ("lstm", "manual", "luong", False, False),
    ("gru", "manual", "bahdanau", False, True), ("gru", "fused", "none", True, False)])
def test_bf16_decoding_of_every_architecture(model_and_batch, cell, impl, attention, feeding,
                                             tie):
    """``--bf16`` (bf16 weights under autocast) decodes greedy and beam for LSTM and GRU, both
    implementations, every attention, with and without input feeding and tied embeddings,
    and mostly agrees with float32."""
    from seq2seq.kernels.device import bf16_weights

    _, b = model_and_batch
    torch.manual_seed(5)
    cfg = ModelConfig(cell=cell, impl=impl, attention=attention, input_feeding=feeding,
                      tie_embeddings=tie, embedding_dim=16, hidden_size=32, dropout=0.0)
    model = fit(Seq2Seq.from_config(cfg, VOCAB, VOCAB, PAD), b, 60).eval()
    full = greedy(model, b.src, b.src_len).hyps
    full_beams = [x[0].tokens for x in beam_search(model, b.src, b.src_len, beam=3)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = bf16_weights(model)
        hyps = greedy(low, b.src, b.src_len).hyps
        beams = [x[0].tokens for x in beam_search(low, b.src, b.src_len, beam=3)]
    assert sum(x == y for x, y in zip(hyps, full)) >= 0.75 * len(full)
    assert sum(x == y for x, y in zip(beams, full_beams)) >= 0.75 * len(full)


def test_decoding_under_bf16_autocast(model_and_batch):
    model, b = model_and_batch
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hyps = greedy(model, b.src, b.src_len).hyps
    assert len(hyps) == len(b.src) and all(isinstance(t, int) for h in hyps for t in h)


def test_bf16_decoding_casts_the_weights_once_and_again_after_they_change(model_and_batch):
    """``--bf16`` decodes with a bfloat16 copy of the model (autocast alone re-casts the
    weights at every step): the copy is reused while the weights stay as they are, made again
    after an in-place update, and the model itself stays float32."""
    from seq2seq.kernels.device import bf16_weights

    model, b = model_and_batch
    low = bf16_weights(model)
    assert low is not model and bf16_weights(model) is low
    assert all(p.dtype == torch.bfloat16 for p in low.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    w = model.decoder.out.weight
    torch.testing.assert_close(low.decoder.out.weight.float(), w, rtol=1e-2, atol=1e-2)
    with torch.no_grad():
        w.mul_(2.0)  # what an optimizer step does: in place, bumping the version
    again = bf16_weights(model)
    assert again is not low
    torch.testing.assert_close(again.decoder.out.weight.float(), w, rtol=1e-2, atol=1e-2)
    with torch.no_grad():
        w.mul_(0.5)
    # the weights replaced rather than changed (the moving average swapped in): a new copy
    from seq2seq.training.ema import WeightAverage

    ema = WeightAverage(model, 0.5)
    with torch.no_grad():
        ema.shadow[0].add_(1.0)
    before = bf16_weights(model)
    with ema.applied():
        inside = bf16_weights(model)
        assert inside is not before
        first = next(model.parameters())
        torch.testing.assert_close(next(inside.parameters()).float(), first, rtol=1e-2, atol=1e-2)
    assert bf16_weights(model) is not inside
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low_hyps = greedy(bf16_weights(model), b.src, b.src_len).hyps
    full = greedy(model, b.src, b.src_len).hyps
    same = sum(x == y for x, y in zip(low_hyps, full))
    assert same >= len(full) * 0.75  # bf16 rounding may flip a close call, not most outputs


class Stop(Exception):
    pass


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_a_check_before_each_step_stops_a_search_and_changes_nothing_else(model_and_batch,
                                                                          search):
    """``check_cancelled`` (the server's timed-out requests): called once per step; returning
    changes no output; raising ends the search at that step."""
    model, b = model_and_batch
    run = {"greedy": lambda **k: greedy(model, b.src, b.src_len, **k).hyps,
           "beam": lambda **k: [[h.tokens for h in x]
                                for x in beam_search(model, b.src, b.src_len, 3, n_best=2, **k)]
           }[search]
    calls = []
    hyps = run(check_cancelled=lambda: calls.append(1))
    assert hyps == run()
    assert len(calls) >= max(len(h) for x in hyps for h in (x if search == "beam" else [x]))

    def stop_at_third_step():
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    calls.clear()
    with pytest.raises(Stop):
        run(check_cancelled=stop_at_third_step)
    assert len(calls) == 3
