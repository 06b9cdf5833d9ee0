"""The hand-written recurrence (seq2seq.kernels.recurrence, run by seq2seq.kernels.fast_rnn's
FastManualRNN) against the plain autograd loop it replaces.

``ManualRNN`` (cells in a loop, plain autograd) is the reference: the fast path must
give the same outputs, final states and gradients of every parameter, input and initial state,
over mixed lengths, both directions and stacked layers; its backward must pass gradcheck; and
the oneDNN prepacked-weight matmuls must agree with plain ``torch.addmm``.
"""

import itertools

import pytest
import torch
import torch.nn.functional as F

from seq2seq.kernels import fast_rnn, onednn
from seq2seq.kernels.fast_rnn import FastManualRNN
from seq2seq.kernels.onednn import mkldnn_available
from seq2seq.kernels.recurrence import recurrence
from seq2seq.model.rnn import ManualRNN, State, length_mask

B, T, I, H = 4, 6, 5, 7
LENGTHS = torch.tensor([6, 3, 1, 5])  # mixed, unsorted, one sequence full length
ATOL = 1e-5

CONFIGS = list(itertools.product(["lstm", "gru"], [1, 2], [False, True]))  # cell, layers, bidir
IDS = [f"{c}-L{n}-{'bi' if b else 'uni'}" for c, n, b in CONFIGS]


def random_state(cell, size, seed=1, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(size, B, H, generator=g).requires_grad_(requires_grad)
    c = torch.randn(size, B, H, generator=g).requires_grad_(requires_grad)
    return State(h, c if cell == "lstm" else None)


def weighted_sum(tensors, seed=2):
    """A loss in which every element of every tensor counts, with its own random weight."""
    g = torch.Generator().manual_seed(seed)
    return sum((t * torch.randn(t.shape, generator=g)).sum() for t in tensors if t is not None)


def pair(*args, **kwargs):
    """A plain ``ManualRNN`` and a ``FastManualRNN`` made from the same random numbers."""
    torch.manual_seed(0)
    plain = ManualRNN(*args, **kwargs)
    torch.manual_seed(0)
    fast = FastManualRNN(*args, **kwargs)
    for a, b in zip(plain.parameters(), fast.parameters()):
        assert torch.equal(a, b)
    return plain, fast


def run(layer, x, lengths, state):
    """Outputs, final states, and gradients w.r.t. parameters, ``x`` and the initial state."""
    out, final = layer(x, lengths, state)
    inputs = [x, *layer.parameters(), *(t for t in (state or ()) if t is not None)]
    grads = torch.autograd.grad(weighted_sum([out, final.h, final.c]), inputs)
    return [out, final.h] + ([] if final.c is None else [final.c]) + list(grads)


@pytest.fixture
def count_calls(monkeypatch):
    """How many times FastManualRNN called the hand-written recurrence."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return recurrence(*args, **kwargs)
    monkeypatch.setattr(fast_rnn, "recurrence", spy)
    return calls


@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("lengths", [LENGTHS, None], ids=["mixed-lengths", "full-length"])
@pytest.mark.parametrize("cell,num_layers,bidirectional", CONFIGS, ids=IDS)
def test_fast_matches_plain(cell, num_layers, bidirectional, lengths, with_state, count_calls):
    plain_layer, fast_layer = pair(cell, I, H, num_layers, bidirectional)
    D = 2 if bidirectional else 1
    state = random_state(cell, num_layers * D, requires_grad=True) if with_state else None
    x = torch.randn(B, T, I, requires_grad=True)
    plain = run(plain_layer, x, lengths, state)
    assert not count_calls
    fast = run(fast_layer, x, lengths, state)
    assert len(count_calls) == num_layers * D  # the fast path did run, once per layer and direction
    assert len(fast) == len(plain)
    for a, b in zip(fast, plain):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_fast_matches_plain_with_dropout():
    """Training mode with dropout between layers: the same dropout masks, the same results
    (the hand-written backward against the autograd loop, both with the fast layer's masks)."""
    args = ("lstm", I, H, 2, True, 0.5)
    _, fast = pair(*args)
    loop = FastManualRNN(*args, backward="autograd")
    loop.load_state_dict(fast.state_dict())
    x = torch.randn(B, T, I, requires_grad=True)
    results = []
    for layer in (loop.train(), fast.train()):
        torch.manual_seed(3)
        results.append(run(layer, x, LENGTHS, None))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_plain_loop_without_autograd(count_calls):
    """Inference (no_grad, inference_mode, frozen parameters) and autocast take the plain loop."""
    layer = FastManualRNN("gru", I, H, num_layers=2)
    x = torch.randn(B, T, I)
    with torch.no_grad():
        layer(x, LENGTHS)
    with torch.inference_mode():
        layer(x, LENGTHS)
    layer.requires_grad_(False)
    layer(x, LENGTHS)
    layer.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(x, LENGTHS)
        out.float().sum().backward()
    assert not count_calls
    layer(x, LENGTHS)
    assert len(count_calls) == 2


def test_backward_twice_with_retained_graph():
    """The backward does not modify what the forward saved."""
    layer = FastManualRNN("lstm", I, H, bidirectional=True)
    x = torch.randn(B, T, I, requires_grad=True)
    out, final = layer(x, LENGTHS)
    loss = weighted_sum([out, final.h, final.c])
    first = torch.autograd.grad(loss, [x, *layer.parameters()], retain_graph=True)
    second = torch.autograd.grad(loss, [x, *layer.parameters()])
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def recurrence_inputs(cell, batch, steps, hidden, dtype, seed=0):
    """``gi, h0, c0, weight_hh, bias_hh`` (all requiring grad) and a ``valid`` mask."""
    G = 4 if cell == "lstm" else 3
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=dtype)).requires_grad_()
    gi, h0 = rand(batch, steps, G * hidden), rand(batch, hidden)
    c0 = rand(batch, hidden) if cell == "lstm" else None
    weight_hh, bias_hh = rand(G * hidden, hidden, scale=hidden ** -0.5), rand(G * hidden)
    lengths = steps - torch.arange(batch) % steps  # steps (full length), steps - 1, ...
    valid = length_mask(lengths, steps).unsqueeze(-1)  # (B, T, 1)
    return (gi, h0, c0, weight_hh, bias_hh), valid


@pytest.mark.parametrize("masked", [False, True], ids=["full-length", "mixed-lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradcheck(cell, reverse, masked):
    inputs, valid = recurrence_inputs(cell, batch=3, steps=4, hidden=3, dtype=torch.float64)
    valid = valid if masked else None
    tensors = [t for t in inputs if t is not None]

    def fn(*args):
        args = list(args)
        gi, h0 = args.pop(0), args.pop(0)
        c0 = args.pop(0) if cell == "lstm" else None
        out, h, c = recurrence(gi, h0, c0, *args, valid=valid, reverse=reverse)
        return (out, h) if c is None else (out, h, c)
    assert torch.autograd.gradcheck(fn, tensors)


@pytest.mark.skipif(not mkldnn_available(), reason="no oneDNN prepacked-linear ops in this torch")
@pytest.mark.parametrize("masked", [False, True], ids=["full-length", "mixed-lengths"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_prepacked_matches_addmm(cell, masked):
    """The oneDNN prepacked-weight matmuls against plain torch.addmm: same outputs, gradients."""
    inputs, valid = recurrence_inputs(cell, batch=8, steps=10, hidden=16, dtype=torch.float32)
    valid = valid if masked else None
    tensors = [t for t in inputs if t is not None]
    results = []
    for prepack in (False, True):
        out, h, c = recurrence(*inputs, valid=valid, reverse=True, prepack=prepack)
        results.append([out, h, c] + list(torch.autograd.grad(weighted_sum([out, h, c]), tensors)))
    for a, b in zip(*results):
        if a is not None:
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_the_onednn_check_is_not_fooled_by_autocast():
    """mkldnn_available() compares the prepacked product with F.linear once and caches the
    answer: asked first under bf16 autocast (decoding with --bf16), it must not compare a
    float32 product with a bf16 one and switch the fast paths off for the whole process."""
    mkldnn_available.cache_clear()
    try:
        plain = mkldnn_available()
        mkldnn_available.cache_clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert mkldnn_available() == plain
    finally:
        mkldnn_available.cache_clear()


@pytest.mark.skipif(not mkldnn_available(), reason="no oneDNN prepacked-linear ops in this torch")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_prepacked_linear_matches_f_linear(dtype):
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(300, 24, generator=g), torch.randn(300, generator=g)
    x = torch.randn(5, 24, generator=g)
    w, b, x = w.to(dtype), b.to(dtype), x.to(dtype)
    lin = onednn.prepacked_linear(w, b, 8)
    if dtype == torch.bfloat16 and not onednn.mkldnn_bf16_supported():
        assert lin is None
        return
    y = lin(x)
    assert y.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2  # bf16: one rounding of the result
    torch.testing.assert_close(y.float(), F.linear(x, w, b).float(), rtol=tol, atol=tol)
    assert onednn.prepacked_linear(w.double(), b.double(), 8) is None


def test_prepack_only_where_it_applies():
    x32, x64 = torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.float64)
    assert not onednn.use_prepack(x64)  # float32 only
    assert onednn.use_prepack(x32) == mkldnn_available()
    bf16 = torch.zeros(2, 3, dtype=torch.bfloat16)
    assert not onednn.use_prepack(bf16)  # bf16 only where the caller asks for it
    assert onednn.use_prepack(bf16, bf16=True) == (mkldnn_available()
                                                   and onednn.mkldnn_bf16_supported())


@pytest.mark.skipif(not mkldnn_available(), reason="no oneDNN prepacked-linear ops in this torch")
def test_the_layer_passes_its_prepack_choice(monkeypatch):
    """FastManualRNN(prepack=False) runs the recurrence on torch.addmm (scripts/bench.py's
    no-oneDNN row); the default prepacks where oneDNN applies. Same results either way."""
    seen = []

    def spy(*args, prepack=None, **kwargs):
        seen.append(prepack)
        return recurrence(*args, prepack=prepack, **kwargs)
    monkeypatch.setattr(fast_rnn, "recurrence", spy)
    x = torch.randn(B, T, I, requires_grad=True)
    outs = []
    for prepack in (True, False):
        torch.manual_seed(0)
        layer = FastManualRNN("gru", I, H, prepack=prepack)
        outs.append(run(layer, x, LENGTHS, None))
    assert seen == [None, False]  # None: where use_prepack allows
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


@pytest.mark.parametrize("choice", ["handwritten", "autograd"])
def test_model_manual_backward_chooses_the_kernel(choice, count_calls):
    from seq2seq.config import ModelConfig
    from seq2seq.model.seq2seq import Seq2Seq

    cfg = ModelConfig(impl="manual", manual_backward=choice, embedding_dim=8, hidden_size=8)
    model = Seq2Seq.from_config(cfg, 20, 20, 0)
    assert isinstance(model.encoder.rnn, FastManualRNN)  # model.kernels: fast, the default
    assert model.encoder.rnn.backward == model.decoder.rnn.backward == choice
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randint(4, 20, (3, 5), generator=g), torch.randint(4, 20, (3, 4), generator=g)
    model(src, torch.tensor([5, 3, 2]), tgt).sum().backward()
    assert bool(count_calls) == (choice == "handwritten")  # the run's log says the same:
    assert ("hand-written" in Seq2Seq.describe(cfg)) == (choice == "handwritten")
    with torch.no_grad():  # no backward to make: the readable loop
        count_calls.clear()
        model(src, torch.tensor([5, 3, 2]), tgt)
        assert not count_calls
