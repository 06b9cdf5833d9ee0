"""The recurrent layers: manual (seq2seq.model.cells in a loop) against fused (nn.LSTM / nn.GRU).

Both implementations must compute the same function from the same state dict, over a batch of
mixed lengths, with and without an initial state; padding must change nothing valid. The same
holds for the fast layers of seq2seq.kernels.fast_rnn (``model.kernels: fast``).
"""

import itertools

import pytest
import torch
from torch import nn

from seq2seq.kernels.fast_rnn import FastFusedGRU, FastManualRNN, make_fast_rnn
from seq2seq.model.rnn import FusedGRU, ManualRNN, State, length_mask, make_rnn

B, T, I, H = 4, 6, 5, 7
LENGTHS = torch.tensor([6, 3, 1, 5])  # mixed, unsorted, one sequence full length
ATOL = 1e-5

CONFIGS = list(itertools.product(["lstm", "gru"], [1, 2], [False, True]))  # cell, layers, bidir
IDS = [f"{c}-L{n}-{'bi' if b else 'uni'}" for c, n, b in CONFIGS]


def pair(cell, num_layers, bidirectional, source="manual", seed=0, make=make_rnn):
    """A manual and a fused layer holding the same weights (initialised by ``source``);
    ``make``: ``make_rnn`` (the plain layers) or ``make_fast_rnn``."""
    torch.manual_seed(seed)
    layers = {impl: make(cell, impl, I, H, num_layers, bidirectional, dropout=0.3).eval()
              for impl in ("manual", "fused")}
    other = "fused" if source == "manual" else "manual"
    layers[other].load_state_dict(layers[source].state_dict())
    return layers["manual"], layers["fused"]


def random_state(cell, size, batch=B, seed=1):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(size, batch, H, generator=g)
    return State(h, torch.randn(size, batch, H, generator=g) if cell == "lstm" else None)


def assert_states_close(a: State, b: State, atol=ATOL):
    torch.testing.assert_close(a.h, b.h, atol=atol, rtol=0)
    assert (a.c is None) == (b.c is None)
    if a.c is not None:
        torch.testing.assert_close(a.c, b.c, atol=atol, rtol=0)


@pytest.mark.parametrize("make", [make_rnn, make_fast_rnn], ids=["plain", "fast"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("source", ["manual", "fused"])
@pytest.mark.parametrize("cell,num_layers,bidirectional", CONFIGS, ids=IDS)
def test_manual_matches_fused(cell, num_layers, bidirectional, source, with_state, make):
    """Same state dict (loaded either way) -> same outputs, final states and gradients."""
    manual, fused = pair(cell, num_layers, bidirectional, source, make=make)
    D = 2 if bidirectional else 1
    state = random_state(cell, num_layers * D) if with_state else None
    x = torch.randn(B, T, I)
    valid = length_mask(LENGTHS, T)  # (B, T)
    g = torch.Generator().manual_seed(2)
    w_out = torch.randn(B, T, D * H, generator=g)  # random weights make every output count
    w_state = random_state(cell, num_layers * D, seed=3)

    results = []
    for layer in (manual, fused):
        xi = x.clone().requires_grad_()
        st = None if state is None else State(*(t.clone().requires_grad_()
                                                if t is not None else None for t in state))
        out, final = layer(xi, LENGTHS, st)
        assert out.shape == (B, T, D * H)
        assert final.h.shape == (num_layers * D, B, H)
        assert (final.c is None) == (cell == "gru")
        loss = (out * w_out)[valid].sum() + (final.h * w_state.h).sum()
        if final.c is not None:
            loss = loss + (final.c * w_state.c).sum()
        loss.backward()
        grads = {n: p.grad for n, p in layer.named_parameters()}
        state_grads = None if st is None else [t.grad for t in st if t is not None]
        results.append((out, final, xi.grad, grads, state_grads))

    (out_m, fin_m, gx_m, gp_m, gs_m), (out_f, fin_f, gx_f, gp_f, gs_f) = results
    torch.testing.assert_close(out_m[valid], out_f[valid], atol=ATOL, rtol=0)
    assert_states_close(fin_m, fin_f)
    torch.testing.assert_close(gx_m, gx_f, atol=ATOL, rtol=0)
    assert gp_m.keys() == gp_f.keys()
    for name in gp_m:
        torch.testing.assert_close(gp_m[name], gp_f[name], atol=ATOL, rtol=0, msg=name)
    if with_state:
        for a, b in zip(gs_m, gs_f):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


@pytest.mark.parametrize("make", [make_rnn, make_fast_rnn], ids=["plain", "fast"])
@pytest.mark.parametrize("impl", ["manual", "fused"])
@pytest.mark.parametrize("cell,num_layers,bidirectional", CONFIGS, ids=IDS)
def test_padding_is_zero_and_changes_nothing_valid(cell, impl, num_layers, bidirectional, make):
    """Outputs are exactly zero at padding; extra padding columns of garbage change nothing."""
    torch.manual_seed(0)
    layer = make(cell, impl, I, H, num_layers, bidirectional).eval()
    x = torch.randn(B, T, I)
    valid = length_mask(LENGTHS, T)
    out, final = layer(x, LENGTHS)
    assert torch.all(out[~valid] == 0)

    garbage = torch.randn(B, 3, I) * 10
    x_long = torch.cat([x, garbage], dim=1)  # (B, T+3, I)
    x_long[:, :T][~valid] = torch.randn(int((~valid).sum()), I) * 10  # garbage inside too
    out_long, final_long = layer(x_long, LENGTHS)
    assert out_long.shape == (B, T + 3, out.size(-1))
    torch.testing.assert_close(out_long[:, :T][valid], out[valid], atol=1e-6, rtol=0)
    assert torch.all(out_long[:, :T][~valid] == 0) and torch.all(out_long[:, T:] == 0)
    assert_states_close(final_long, final, atol=1e-6)


@pytest.mark.parametrize("cell,num_layers,bidirectional", CONFIGS, ids=IDS)
def test_final_states_are_those_of_the_last_valid_step(cell, num_layers, bidirectional):
    """The forward direction's final state is its output at ``len-1``; for a bidirectional
    layer the backward direction's (``state.h[-1]``) is at position 0, not ``out[:, -1]``."""
    torch.manual_seed(0)
    layer = make_rnn(cell, "manual", I, H, num_layers, bidirectional).eval()
    out, final = layer(torch.randn(B, T, I), LENGTHS)  # (B, T, D*H)
    D = 2 if bidirectional else 1
    last = out[torch.arange(B), LENGTHS - 1, :H]  # (B, H)
    torch.testing.assert_close(final.h[-D], last, atol=0, rtol=0)
    if bidirectional:
        torch.testing.assert_close(final.h[-1], out[:, 0, H:], atol=0, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_state_dicts_are_interchangeable_with_torch(cell, bidirectional):
    """Same parameter names and shapes as nn.LSTM/nn.GRU; a plain torch state dict loads into
    the manual layer, which then computes what the torch layer computes."""
    torch.manual_seed(0)
    ref_cls = nn.LSTM if cell == "lstm" else nn.GRU
    ref = ref_cls(I, H, num_layers=2, batch_first=True, bidirectional=bidirectional)
    manual = make_rnn(cell, "manual", I, H, 2, bidirectional)
    fused = make_rnn(cell, "fused", I, H, 2, bidirectional)
    shapes = {k: v.shape for k, v in ref.state_dict().items()}
    for layer in (manual, fused):
        assert {k: v.shape for k, v in layer.state_dict().items()} == shapes
    manual.load_state_dict(ref.state_dict())  # strict
    ref.load_state_dict(manual.state_dict())
    fused.load_state_dict(manual.state_dict())

    x = torch.randn(B, T, I)
    out_ref, hx = ref(x)
    out_m, st_m = manual(x)
    torch.testing.assert_close(out_m, out_ref, atol=ATOL, rtol=0)
    assert_states_close(st_m, State.from_torch(hx))


def test_forget_gate_is_the_second_quarter():
    """LSTM gates are ordered i, f, g, o as in nn.LSTM: closing the rows H:2H (the forget
    gate) makes the cell drop its previous c."""
    torch.manual_seed(0)
    manual = make_rnn("lstm", "manual", I, H)
    with torch.no_grad():
        manual.bias_ih_l0[H:2 * H] = -1e4  # f_t = 0
    state = random_state("lstm", 1)
    x = torch.randn(B, 1, I)
    _, st = manual(x, None, state)
    _, st_zero = manual(x, None, State(state.h, torch.zeros_like(state.c)))
    torch.testing.assert_close(st.c, st_zero.c, atol=0, rtol=0)


@pytest.mark.parametrize("impl", ["manual", "fused"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_step_equals_forward(cell, num_layers, impl):
    """One step() is forward() over one step; repeated steps are forward() over the sequence."""
    torch.manual_seed(0)
    layer = make_rnn(cell, impl, I, H, num_layers, dropout=0.3).eval()
    state = random_state(cell, num_layers)
    x = torch.randn(B, T, I)

    out_1, st_1 = layer(x[:, :1], None, state)
    out_s, st_s = layer.step(x[:, 0], state)
    assert out_s.shape == (B, H)
    torch.testing.assert_close(out_s, out_1[:, 0], atol=ATOL, rtol=0)
    assert_states_close(st_s, st_1)

    out_seq, st_seq = layer(x, None, state)
    st = state
    for t in range(T):
        out_t, st = layer.step(x[:, t], st)
        torch.testing.assert_close(out_t, out_seq[:, t], atol=ATOL, rtol=0)
    assert_states_close(st, st_seq)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_manual_and_fused_steps_agree(cell):
    manual, fused = pair(cell, 2, False)
    state = random_state(cell, 2)
    x_t = torch.randn(B, I)
    out_m, st_m = manual.step(x_t, state)
    out_f, st_f = fused.step(x_t, state)
    torch.testing.assert_close(out_m, out_f, atol=ATOL, rtol=0)
    assert_states_close(st_m, st_f)


@pytest.mark.parametrize("impl", ["manual", "fused"])
def test_step_rejects_bidirectional(impl):
    layer = make_rnn("gru", impl, I, H, 1, bidirectional=True)
    with pytest.raises(ValueError, match="unidirectional"):
        layer.step(torch.randn(B, I), random_state("gru", 2))


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    layer = make_rnn("lstm", "manual", I, H, 2, dropout=0.5)
    x = torch.randn(B, T, I)
    layer.eval()
    a, _ = layer(x, LENGTHS)
    b, _ = layer(x, LENGTHS)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    layer.train()
    c, _ = layer(x, LENGTHS)
    assert not torch.allclose(a, c)
    single = make_rnn("lstm", "manual", I, H, 1, dropout=0.5)  # no layer above: no dropout
    assert single.dropout == 0.0


@pytest.mark.parametrize("make", [make_rnn, make_fast_rnn], ids=["plain", "fast"])
def test_make_rnn_rejects_unknown_choices(make):
    with pytest.raises(ValueError, match="cell"):
        make("lstmm", "manual", I, H)
    with pytest.raises(ValueError, match="impl"):
        make("lstm", "fast", I, H)
    assert isinstance(make("gru", "manual", I, H), ManualRNN)
    assert isinstance(make_fast_rnn("gru", "manual", I, H), FastManualRNN)
    assert type(make_rnn("gru", "fused", I, H)) is FusedGRU  # the plain classes themselves


@pytest.mark.parametrize("num_layers,bidirectional", [(1, True), (2, True), (2, False)])
def test_fused_gru_with_lengths_equals_the_packed_call(num_layers, bidirectional, monkeypatch):
    """FastFusedGRU runs nn.GRU's kernel per direction on the padded batch (the reverse
    direction on each sequence reversed within its length) instead of packing: outputs, final
    states and every gradient equal those of the packed nn.GRU call (the plain FusedGRU's)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(0)
    rnn = make_fast_rnn("gru", "fused", 6, 5, num_layers, bidirectional)
    assert isinstance(rnn, FastFusedGRU)
    real, calls = FastFusedGRU._unpacked, []
    monkeypatch.setattr(FastFusedGRU, "_unpacked",
                        lambda self, *a: calls.append(1) or real(self, *a))
    D = 2 if bidirectional else 1
    x = torch.randn(4, 7, 6, requires_grad=True)
    lengths = torch.tensor([7, 3, 5, 1])
    h0 = torch.randn(num_layers * D, 4, 5, requires_grad=True)
    out, state = rnn(x, lengths, State(h0))
    assert calls  # the unpacked path ran
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    ref, ref_h = torch.nn.GRU.forward(rnn, packed, h0)
    ref, _ = pad_packed_sequence(ref, batch_first=True, total_length=7)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state.h, ref_h, rtol=1e-5, atol=1e-6)
    assert torch.all(out[1, 3:] == 0) and torch.all(out[3, 1:] == 0)
    weight = torch.arange(float(out.size(-1)))  # a loss that tells the directions apart
    inputs = [x, h0, *rnn.parameters()]
    grads = torch.autograd.grad((out * weight).sum() + (state.h ** 2).sum(), inputs)
    ref_grads = torch.autograd.grad((ref * weight).sum() + (ref_h ** 2).sum(), inputs)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_fused_step_equals_a_one_step_call_of_the_module(cell, num_layers):
    """FusedLSTM/FusedGRU.step runs torch.lstm_cell/gru_cell per layer: the same output, state
    and gradients as nn.LSTM/nn.GRU called on a sequence of one step."""
    torch.manual_seed(0)
    rnn = make_rnn(cell, "fused", 6, 5, num_layers).eval()
    x = torch.randn(3, 6, requires_grad=True)
    h0 = torch.randn(num_layers, 3, 5, requires_grad=True)
    c0 = torch.randn(num_layers, 3, 5, requires_grad=True) if cell == "lstm" else None
    out, state = rnn.step(x, State(h0, c0))
    ref, hx = type(rnn).__mro__[2].forward(rnn, x.unsqueeze(1), State(h0, c0).to_torch())
    ref_state = State.from_torch(hx)
    torch.testing.assert_close(out, ref.squeeze(1), rtol=1e-5, atol=1e-6)
    for a, b in zip(state, ref_state):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    inputs = [x, h0, *([c0] if c0 is not None else []), *rnn.parameters()]
    loss = lambda o, s: (o * torch.arange(5.0)).sum() + sum((t ** 2).sum() for t in s if t is not None)
    grads = torch.autograd.grad(loss(out, state), inputs)
    ref_grads = torch.autograd.grad(loss(ref.squeeze(1), ref_state), inputs)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
