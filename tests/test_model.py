"""The encoder-decoder: shapes, padding invariance, the masked loss, teacher forcing, parity.

Every property is checked for each cell, implementation and attention, with input feeding
and tied embeddings on and off.
"""

import itertools

import pytest
import torch

from seq2seq.config import ModelConfig
from seq2seq.data.batching import collate
from seq2seq.decoding.search import greedy
from seq2seq.model.encoder import Bridge, Encoder
from seq2seq.training.loss import masked_cross_entropy
from seq2seq.training.objective import Objective
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.model.rnn import State
from seq2seq.data.tokenizer import BOS, EOS, PAD

V_SRC, V_TGT = 13, 11
E, H = 8, 12
SMALL = dict(embedding_dim=E, hidden_size=H, num_layers=1, dropout=0.1)
SRC_LENS, TGT_LENS = (5, 2, 4, 1), (3, 6, 1, 4)

GRID = list(itertools.product(["lstm", "gru"], ["manual", "fused"],
                              ["none", "bahdanau", "luong"], [False, True], [False, True]))
GRID_IDS = ["-".join([c, i, a, "feed" if f else "nofeed", "tied" if t else "untied"])
            for c, i, a, f, t in GRID]
# Teacher forcing does not depend on tied embeddings: a smaller grid for the stepping tests.
TF_GRID = list(itertools.product(["lstm", "gru"], ["manual", "fused"],
                                 ["none", "bahdanau", "luong"], [False, True]))
TF_IDS = ["-".join([c, i, a, "feed" if f else "nofeed"]) for c, i, a, f in TF_GRID]


def build(seed=0, **options) -> Seq2Seq:
    """A tiny model in eval mode (dropout off) built the way training builds it."""
    torch.manual_seed(seed)
    return Seq2Seq.from_config(ModelConfig(**{**SMALL, **options}), V_SRC, V_TGT, PAD).eval()


def toy_batch(seed=0, src_lens=SRC_LENS, tgt_lens=TGT_LENS):
    """A padded batch of random ids, made by the real collate (BOS + tgt, tgt + EOS)."""
    g = torch.Generator().manual_seed(seed)
    src = [torch.randint(4, V_SRC, (n,), generator=g).tolist() for n in src_lens]
    tgt = [torch.randint(4, V_TGT, (n,), generator=g).tolist() for n in tgt_lens]
    return collate(src, tgt, range(len(src)))


def pad_more(ids, n, value=PAD):
    return torch.cat([ids, ids.new_full((ids.size(0), n), value)], dim=1)  # (B, T+n)


def stepped(model, batch, feed_gold):
    """Logits ``(B, T, V)`` of ``decoder.step`` (the path search uses) from BOS on, fed the
    gold previous token (``feed_gold``) or the argmax of the previous step's logits."""
    enc = model.encoder(batch.src, batch.src_len)
    state = model.decoder.start(enc)
    y = batch.tgt_in[:, 0]  # BOS
    outs = []
    for t in range(batch.tgt_in.size(1)):
        logits, state, _ = model.decoder.step(y, state, enc)  # (B, V)
        outs.append(logits)
        if t + 1 < batch.tgt_in.size(1):
            y = batch.tgt_in[:, t + 1] if feed_gold else logits.argmax(-1)  # (B,)
    return torch.stack(outs, dim=1)  # (B, T, V)


def fake_coins(values_per_example):
    """A stand-in for torch.rand whose value depends only on the example (the first dim)."""
    def rand(*size, **kwargs):
        kwargs.pop("generator", None)
        size = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
        v = torch.tensor(values_per_example, dtype=kwargs.pop("dtype", None) or torch.float32)
        return v.view(-1, *([1] * (len(size) - 1))).expand(*size).clone().to(**kwargs)
    return rand


# -- shapes -------------------------------------------------------------------------------

@pytest.mark.parametrize("cell,impl,attention,input_feeding,tie", GRID, ids=GRID_IDS)
def test_shapes_are_those_documented(cell, impl, attention, input_feeding, tie):
    model = build(cell=cell, impl=impl, attention=attention, input_feeding=input_feeding,
                  tie_embeddings=tie)
    b = toy_batch()
    B, S = b.src.shape
    T = b.tgt_in.size(1)
    for tf_ratio in (1.0, 0.5, 0.0):
        assert model(b.src, b.src_len, b.tgt_in, tf_ratio).shape == (B, T, V_TGT)

    enc = model.encoder(b.src, b.src_len)
    assert enc.out.shape == (B, S, 2 * H)  # bidirectional encoder by default
    assert enc.pad_mask.shape == (B, S) and enc.pad_mask.dtype == torch.bool
    assert torch.equal(enc.pad_mask, b.src == PAD)
    assert enc.state.h.shape == (1, B, H)
    assert (enc.state.c is None) == (cell == "gru")

    O = E if tie else H
    state = model.decoder.start(enc)
    assert (state.att is None) != input_feeding
    if input_feeding:
        assert state.att.shape == (B, O)
    logits, state, weights = model.decoder.step(b.tgt_in[:, 0], state, enc)
    assert logits.shape == (B, V_TGT)
    assert (weights is None) == (attention == "none")
    if weights is not None:
        assert weights.shape == (B, S)
        torch.testing.assert_close(weights.sum(-1), torch.ones(B))
        assert torch.all(weights[enc.pad_mask] == 0)

    if tie:
        assert model.decoder.out.weight is model.decoder.embedding.weight
    else:
        assert model.decoder.out.weight.shape == (V_TGT, H)


@pytest.mark.parametrize("num_layers,bidirectional", [(2, True), (2, False), (3, False)])
@pytest.mark.parametrize("impl", ["manual", "fused"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layers_and_directions(cell, impl, num_layers, bidirectional):
    model = build(cell=cell, impl=impl, num_layers=num_layers, bidirectional=bidirectional)
    b = toy_batch()
    B, S = b.src.shape
    enc = model.encoder(b.src, b.src_len)
    assert enc.out.shape == (B, S, (2 if bidirectional else 1) * H)
    assert enc.state.h.shape == (num_layers, B, H)
    assert model(b.src, b.src_len, b.tgt_in).shape == (B, b.tgt_in.size(1), V_TGT)


# -- padding ------------------------------------------------------------------------------

@pytest.mark.parametrize("cell,impl,attention,input_feeding,tie", GRID, ids=GRID_IDS)
def test_extra_padding_changes_no_valid_logit_and_no_loss(cell, impl, attention,
                                                          input_feeding, tie):
    model = build(cell=cell, impl=impl, attention=attention, input_feeding=input_feeding,
                  tie_embeddings=tie)
    b = toy_batch()
    T = b.tgt_in.size(1)
    valid = b.tgt_out != PAD  # (B, T)
    src_garbage = b.src.clone()
    src_garbage[b.src == PAD] = 5  # ids past src_len are ignored, whatever they are
    for tf_ratio in (1.0, 0.0):
        logits = model(b.src, b.src_len, b.tgt_in, tf_ratio)
        loss, n = masked_cross_entropy(logits, b.tgt_out, PAD)
        for src in (pad_more(b.src, 3), pad_more(src_garbage, 3, value=7)):
            longer = model(src, b.src_len, pad_more(b.tgt_in, 2), tf_ratio)  # (B, T+2, V)
            torch.testing.assert_close(longer[:, :T][valid], logits[valid], atol=1e-5, rtol=0)
            loss_l, n_l = masked_cross_entropy(longer, pad_more(b.tgt_out, 2), PAD)
            assert n_l == n
            torch.testing.assert_close(loss_l, loss, atol=1e-4, rtol=1e-6)


def test_batch_composition_changes_nothing():
    """A sentence gets the same logits alone as in a padded batch with longer sentences."""
    model = build(cell="lstm", impl="manual", attention="bahdanau", input_feeding=True)
    b = toy_batch()
    logits = model(b.src, b.src_len, b.tgt_in)
    for i in range(b.src.size(0)):
        S_i, T_i = int(b.src_len[i]), int((b.tgt_out[i] != PAD).sum())
        alone = model(b.src[i:i + 1, :S_i], b.src_len[i:i + 1], b.tgt_in[i:i + 1, :T_i])
        torch.testing.assert_close(alone[0], logits[i, :T_i], atol=1e-5, rtol=0)


# -- the kernels ----------------------------------------------------------------------------

@pytest.mark.parametrize("cell,impl,attention,input_feeding", TF_GRID, ids=TF_IDS)
def test_fast_kernels_compute_what_the_plain_model_computes(cell, impl, attention,
                                                            input_feeding):
    """model.kernels fast and plain build the same parameters from the same seed and compute
    the same function: logits, and the training objective and its gradients (dropout off) with
    teacher forcing 1 and 0.5 (the same coins). Only the plain model is built from the classes
    of seq2seq.model alone."""
    models = {k: build(kernels=k, cell=cell, impl=impl, attention=attention,
                       input_feeding=input_feeding, dropout=0.0) for k in ("fast", "plain")}
    fast, plain = models["fast"], models["plain"]
    assert fast.kernels == "fast" and plain.kernels == "plain"
    assert all(type(m).__module__.startswith("seq2seq.model.") or
               not type(m).__module__.startswith("seq2seq.") for m in plain.modules())
    assert any(type(m).__module__.startswith("seq2seq.kernels.") for m in fast.modules())
    for a, b in zip(fast.state_dict().items(), plain.state_dict().items()):
        assert a[0] == b[0] and torch.equal(a[1], b[1])
    b = toy_batch()
    with torch.no_grad():
        torch.testing.assert_close(fast(b.src, b.src_len, b.tgt_in),
                                   plain(b.src, b.src_len, b.tgt_in), atol=1e-5, rtol=0)
    for tf_ratio in (1.0, 0.5):
        results = []
        for model in (fast.train(), plain.train()):
            model.zero_grad()
            torch.manual_seed(3)
            out = Objective(model, label_smoothing=0.1)(b.src, b.src_len, b.tgt_in, b.tgt_out,
                                                       tf_ratio)
            out.objective.backward()
            results.append((out.objective.item(), out.nll, [p.grad for p in model.parameters()]))
        (loss_f, nll_f, grads_f), (loss_p, nll_p, grads_p) = results
        assert loss_f == pytest.approx(loss_p, rel=1e-5) and nll_f == pytest.approx(nll_p, rel=1e-5)
        for g_f, g_p in zip(grads_f, grads_p):
            torch.testing.assert_close(g_f, g_p, rtol=1e-4, atol=1e-6)


def test_the_kernels_key_is_in_the_log_line():
    plain = Seq2Seq.describe(ModelConfig(kernels="plain", impl="manual"))
    fast = Seq2Seq.describe(ModelConfig(impl="manual"))
    assert "plain kernels" in plain and "hand-written" not in plain
    assert "fast kernels" in fast and "hand-written" in fast


# -- the loss -----------------------------------------------------------------------------

@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_masked_loss_ignores_padded_positions(label_smoothing):
    b = toy_batch()
    pad = b.tgt_out == PAD  # (B, T)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(*b.tgt_out.shape, V_TGT, generator=g).requires_grad_()
    loss, n = masked_cross_entropy(logits, b.tgt_out, PAD, label_smoothing)
    assert n == int((~pad).sum()) == sum(n + 1 for n in TGT_LENS)  # each target and its EOS
    loss.backward()
    assert torch.all(logits.grad[pad] == 0)
    assert torch.all(logits.grad[~pad].abs().sum(-1) > 0)

    garbage = logits.detach().clone()
    garbage[pad] = torch.randn(int(pad.sum()), V_TGT, generator=g) * 1e4
    garbage[0, -1, 0] = float("nan")  # sentence 0 is shorter than T: position T-1 is padding
    garbage[2, -1, 1] = float("inf")
    loss_g, _ = masked_cross_entropy(garbage, b.tgt_out, PAD, label_smoothing)
    torch.testing.assert_close(loss_g, loss.detach(), atol=1e-5, rtol=0)

    if label_smoothing == 0:  # the plain sum of -log p(gold) over the valid positions
        logp = torch.log_softmax(logits.detach(), -1)  # (B, T, V)
        gold = logp.gather(-1, b.tgt_out.unsqueeze(-1)).squeeze(-1)  # (B, T)
        torch.testing.assert_close(loss.detach(), -gold[~pad].sum(), atol=1e-5, rtol=0)


# -- teacher forcing ----------------------------------------------------------------------

@pytest.mark.parametrize("cell,impl,attention,input_feeding", TF_GRID, ids=TF_IDS)
def test_full_teacher_forcing_equals_stepping_on_gold_tokens(cell, impl, attention,
                                                             input_feeding):
    """tf_ratio=1 (the one-call fast path without input feeding, the loop with it) gives the
    logits of decoder.step fed the gold previous tokens."""
    model = build(cell=cell, impl=impl, attention=attention, input_feeding=input_feeding)
    b = toy_batch()
    calls = []
    hook = model.decoder.rnn.register_forward_hook(lambda *_: calls.append(1))
    forced = model(b.src, b.src_len, b.tgt_in, 1.0)
    hook.remove()
    assert len(calls) == (0 if input_feeding else 1)  # fast path: the whole target in one call
    torch.testing.assert_close(forced, stepped(model, b, feed_gold=True), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell,impl,attention,input_feeding,tie", GRID, ids=GRID_IDS)
def test_decoder_computes_the_equations_of_its_docstring(cell, impl, attention,
                                                         input_feeding, tie):
    """x_t = [emb(y_{t-1}); o_{t-1}], h_t = RNN(x_t, s_{t-1}), c_t = attention(h_t),
    o_t = tanh(W_c [h_t; c_t]), logits = W_out o_t; o_0 = 0, s_0 = the bridged encoder state."""
    model = build(cell=cell, impl=impl, attention=attention, input_feeding=input_feeding,
                  tie_embeddings=tie)
    dec = model.decoder
    b = toy_batch()
    enc = model.encoder(b.src, b.src_len)
    s = enc.state
    o = torch.zeros(b.src.size(0), E if tie else H)  # o_0
    expected = []
    for t in range(b.tgt_in.size(1)):
        x = dec.embedding(b.tgt_in[:, t])  # (B, E)
        if input_feeding:
            x = torch.cat([x, o], dim=-1)  # (B, E + O)
        h, s = dec.rnn.step(x, s)  # (B, H)
        if attention == "none":
            o = torch.tanh(dec.combine(h))
        else:
            keys = dec.attention.keys(enc.out)
            ctx, _ = dec.attention(h.unsqueeze(1), keys, enc.out, enc.pad_mask)  # (B, 1, 2H)
            o = torch.tanh(dec.combine(torch.cat([h, ctx.squeeze(1)], dim=-1)))  # (B, O)
        expected.append(dec.out(o))  # (B, V)
    logits = model(b.src, b.src_len, b.tgt_in, 1.0)
    torch.testing.assert_close(logits, torch.stack(expected, dim=1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell,impl,attention,input_feeding", TF_GRID, ids=TF_IDS)
def test_coins_choose_between_gold_and_own_prediction(cell, impl, attention, input_feeding,
                                                      monkeypatch):
    """Below tf_ratio=1 the decoder steps and flips a coin per token per example. With coins
    fixed per example (0 < 0.5: gold; 0.99 >= 0.5: own argmax), the examples fed gold match
    stepping on gold tokens and the others match stepping on the argmax."""
    model = build(cell=cell, impl=impl, attention=attention, input_feeding=input_feeding)
    b = toy_batch()
    monkeypatch.setattr(torch, "rand", fake_coins([0.0, 0.99, 0.99, 0.0]))
    mixed = model(b.src, b.src_len, b.tgt_in, 0.5)
    monkeypatch.undo()
    gold, own = stepped(model, b, feed_gold=True), stepped(model, b, feed_gold=False)
    torch.testing.assert_close(mixed[[0, 3]], gold[[0, 3]], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[[1, 2]], own[[1, 2]], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell,impl,attention,input_feeding", TF_GRID, ids=TF_IDS)
def test_no_teacher_forcing_never_feeds_gold_after_the_first(cell, impl, attention,
                                                             input_feeding):
    model = build(cell=cell, impl=impl, attention=attention, input_feeding=input_feeding)
    b = toy_batch()
    free = model(b.src, b.src_len, b.tgt_in, 0.0)
    torch.testing.assert_close(free, stepped(model, b, feed_gold=False), atol=1e-5, rtol=0)

    scrambled = b.tgt_in.clone()
    scrambled[:, 1:] = torch.randint(0, V_TGT, scrambled[:, 1:].shape,
                                     generator=torch.Generator().manual_seed(9))
    assert not torch.equal(scrambled, b.tgt_in)
    b2 = b._replace(tgt_in=scrambled)
    torch.testing.assert_close(model(b2.src, b2.src_len, b2.tgt_in, 0.0), free, atol=0, rtol=0)
    for feed in ("argmax", "sample"):  # sampled feeding never looks at the gold either
        torch.manual_seed(3)
        a = model(b.src, b.src_len, b.tgt_in, 0.0, feed)
        torch.manual_seed(3)
        c = model(b2.src, b2.src_len, b2.tgt_in, 0.0, feed)
        torch.testing.assert_close(a, c, atol=0, rtol=0)


def test_first_input_is_always_the_gold_bos():
    """At tf_ratio=0 the first step still reads tgt_in[:, 0]: changing it changes the logits."""
    model = build(cell="gru", impl="manual", attention="luong")
    b = toy_batch()
    other = b.tgt_in.clone()
    other[:, 0] = EOS
    assert not torch.allclose(model(b.src, b.src_len, other, 0.0)[:, 0],
                              model(b.src, b.src_len, b.tgt_in, 0.0)[:, 0])


def test_teacher_forcing_gradients_reach_the_whole_model():
    """Feeding predictions blocks no gradient except through the argmax itself."""
    model = build(cell="lstm", impl="manual", attention="bahdanau", input_feeding=True)
    model.train()
    b = toy_batch()
    loss, _ = masked_cross_entropy(model(b.src, b.src_len, b.tgt_in, 0.5), b.tgt_out, PAD)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# -- manual against fused -----------------------------------------------------------------

@pytest.mark.parametrize("num_layers,bidirectional", [(1, True), (2, False), (2, True)])
@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_manual_and_fused_models_agree(cell, attention, num_layers, bidirectional):
    options = dict(cell=cell, attention=attention, num_layers=num_layers,
                   bidirectional=bidirectional, input_feeding=num_layers == 2)
    manual = build(impl="manual", **options)
    fused = build(impl="fused", seed=1, **options)
    fused.load_state_dict(manual.state_dict())  # strict: the same names and shapes
    b = toy_batch()
    for tf_ratio in (1.0, 0.0):
        torch.testing.assert_close(manual(b.src, b.src_len, b.tgt_in, tf_ratio),
                                   fused(b.src, b.src_len, b.tgt_in, tf_ratio),
                                   atol=1e-5, rtol=0)
    hyps_m, att_m, _ = greedy(manual, b.src, b.src_len, return_attention=True)
    hyps_f, att_f, _ = greedy(fused, b.src, b.src_len, return_attention=True)
    assert hyps_m == hyps_f
    if attention != "none":
        for a, f in zip(att_m, att_f):
            torch.testing.assert_close(a, f, atol=1e-5, rtol=0)


def test_greedy_output_is_the_argmax_of_free_running_logits():
    """Greedy search and the decoder at tf_ratio=0 step the same way."""
    model = build(cell="gru", impl="fused", attention="bahdanau", input_feeding=True)
    b = toy_batch()
    hyps = greedy(model, b.src, b.src_len, max_len_a=0, max_len_b=8).hyps
    bos = torch.full((b.src.size(0), 8), BOS)
    free = model(b.src, b.src_len, bos, 0.0).argmax(-1).tolist()  # (B, 8)
    for hyp, row in zip(hyps, free):
        expected = []
        for tok in row:  # up to the first EOS (or PAD, which greedy also stops at)
            if tok in (EOS, PAD):
                break
            expected.append(tok)
        assert hyp == expected


# -- the bridge ---------------------------------------------------------------------------

def expected_layer(k, enc_layers, dec_layers):
    """The documented mapping: decoder layer k reads this encoder layer."""
    return min(enc_layers - 1, max(0, enc_layers - dec_layers) + k)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("enc_layers,dec_layers", [(1, 1), (2, 2), (2, 1), (3, 2), (1, 2),
                                                    (1, 3), (2, 3), (2, 4)])
@pytest.mark.parametrize("directions", [1, 2])
def test_bridge_pairs_directions_and_maps_layers(cell, directions, enc_layers, dec_layers):
    torch.manual_seed(0)
    Hd, Bn = 5, 3
    bridge = Bridge(H, directions, enc_layers, Hd, dec_layers)
    h = torch.randn(enc_layers * directions, Bn, H)  # (L*D, B, H), every slot different
    state = State(h, torch.randn_like(h) if cell == "lstm" else None)
    out = bridge(state)
    assert out.h.shape == (dec_layers, Bn, Hd)
    assert (out.c is None) == (cell == "gru")
    for k in range(dec_layers):
        j = expected_layer(k, enc_layers, dec_layers)
        for s_in, s_out in [(state.h, out.h)] + ([(state.c, out.c)] if cell == "lstm" else []):
            cat = torch.cat([s_in[j * directions + d] for d in range(directions)], -1)  # (B, D*H)
            torch.testing.assert_close(s_out[k], torch.tanh(bridge.proj(cat)))


@pytest.mark.parametrize("impl", ["manual", "fused"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_encoder_bridges_its_top_layer_final_states(cell, impl):
    """The decoder's initial state of the top layer is the bridge of [forward final state;
    backward final state], read off the encoder outputs at len-1 and at 0."""
    torch.manual_seed(0)
    enc = Encoder(cell, impl, V_SRC, E, H, num_layers=2, bidirectional=True, dropout=0.0,
                  dec_hidden_size=6, dec_layers=2, pad_id=PAD).eval()
    b = toy_batch()
    encoded = enc(b.src, b.src_len)
    B = b.src.size(0)
    fwd = encoded.out[torch.arange(B), b.src_len - 1, :H]  # (B, H)
    bwd = encoded.out[:, 0, H:]  # (B, H)
    expected = torch.tanh(enc.bridge.proj(torch.cat([fwd, bwd], -1)))  # (B, 6)
    torch.testing.assert_close(encoded.state.h[-1], expected, atol=1e-6, rtol=0)
