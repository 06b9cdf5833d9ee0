"""ValueGrads: the attention values' gradient summed once over a stepping training loop equals
the per-step sum autograd makes (in float64 to float64 rounding), counts only the backward it
is summed in, holds nothing past its batch, and refuses what it cannot do."""

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F

import seq2seq.training.loss as training_loss
from seq2seq.kernels import fast_model
from seq2seq.data.batching import collate
from seq2seq.config import ModelConfig
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.data.tokenizer import PAD
from seq2seq.kernels.value_grads import ValueGrads
from seq2seq.training.objective import Objective


def small_model(cell="lstm", attention="bahdanau", input_feeding=True, defer=True):
    cfg = ModelConfig(cell=cell, attention=attention, input_feeding=input_feeding,
                      embedding_dim=8, hidden_size=12, dropout=0.2, tie_embeddings=False)
    torch.manual_seed(0)
    model = Seq2Seq.from_config(cfg, 13, 11, PAD, defer_value_grads=defer).train()
    b = collate([[5, 6, 7, 8], [9, 4], [6, 6, 7]], [[4, 5, 6], [7, 8, 9, 10, 4], [5]], [0, 1, 2])
    return model, b


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("cell,attention,input_feeding,tf",
                         [("lstm", "bahdanau", True, 1.0), ("gru", "luong", True, 1.0),
                          ("gru", "bahdanau", False, 0.5), ("lstm", "luong", False, 0.0)])
def test_deferred_value_gradients_equal_the_per_step_ones(monkeypatch, cell, attention,
                                                          input_feeding, tf, amp):
    """A stepping training loop gives the same loss and gradients (every parameter, the
    encoder's included) whether the values' gradient is summed after the loop or per step by
    autograd; in bf16 within bf16 rounding (the deferred sum is float32, the per-step one sums
    bf16 products)."""
    used = []
    monkeypatch.setattr(fast_model, "ValueGrads", lambda v: used.append(1) or ValueGrads(v))

    def run(defer):
        model, b = small_model(cell, attention, input_feeding, defer)
        torch.manual_seed(7)
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            out = Objective(model, fused=False)(b.src, b.src_len, b.tgt_in, b.tgt_out, tf)
        out.objective.backward()
        return out.objective.item(), [p.grad.clone() for p in model.parameters()]

    ref_loss, ref_grads = run(False)
    assert not used
    loss, grads = run(True)
    assert used  # the stepping loop took the deferred path
    tol = dict(rtol=3e-2, atol=3e-3) if amp else dict(rtol=1e-5, atol=1e-6)
    assert loss == pytest.approx(ref_loss, rel=tol["rtol"])
    names = [n for n, _ in small_model()[0].named_parameters()]
    for name, a, r in zip(names, grads, ref_grads):
        torch.testing.assert_close(a, r, **tol, msg=lambda m: f"{name}: {m}")


def steps(seed=3, n=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(2, 5, 4, generator=g, dtype=dtype, requires_grad=True)  # (B, S, 2H)
    ws = [torch.softmax(torch.randn(2, 1, 5, generator=g, dtype=dtype), -1).requires_grad_()
          for _ in range(n)]  # (B, 1, S) each
    return values, ws


def test_only_the_steps_that_got_a_gradient_count():
    """Steps whose context gets no gradient add nothing; the total equals autograd's over the
    steps that do; a use of the values outside the steps adds its own gradient."""
    values, ws = steps()
    grads = ValueGrads(values)
    ctxs = [grads.context(w) for w in ws]  # (2, 1, 4) each
    (ctxs[0].sum() * 2 + ctxs[2].pow(2).sum() + grads.values.sum()).backward()  # step 1 unused
    deferred = [values.grad.clone()] + [w.grad.clone() for w in (ws[0], ws[2])]
    assert ws[1].grad is None
    values.grad = None
    for w in ws:
        w.grad = None
    ref = [w @ values for w in ws]
    (ref[0].sum() * 2 + ref[2].pow(2).sum() + values.sum()).backward()
    for a, r in zip(deferred, [values.grad, ws[0].grad, ws[2].grad]):
        torch.testing.assert_close(a, r, rtol=1e-6, atol=1e-6)


def test_a_second_backward_sums_only_what_it_reaches():
    """With retain_graph, a second backward through other steps does not count the first
    one's gradients again."""
    values, ws = steps()
    grads = ValueGrads(values)
    c0, c1 = grads.context(ws[0]), grads.context(ws[1])
    c0.sum().backward(retain_graph=True)
    first = values.grad.clone()
    values.grad = None
    c1.sum().backward()
    torch.testing.assert_close(first, (ws[0].transpose(1, 2) @ torch.ones(2, 1, 4)).detach())
    torch.testing.assert_close(values.grad, (ws[1].transpose(1, 2) @ torch.ones(2, 1, 4)).detach())


def test_a_backward_that_stops_short_of_the_values_leaves_nothing_behind():
    """A backward that reaches some steps but not the values (``torch.autograd.grad`` of the
    steps' inputs, with retain_graph) keeps no step gradient for the next backward to sum: the
    values get the gradient of the next backward alone, as under plain autograd."""
    values, ws = steps()
    grads = ValueGrads(values)
    c = [grads.context(w) for w in ws]  # (2, 1, 4) each
    (g0,) = torch.autograd.grad(c[0].pow(2).sum() + c[1].sum(), ws[0], retain_graph=True)
    (c[1].pow(2).sum() + 3 * c[2].sum()).backward()  # step 0 not reached
    deferred = values.grad.clone()
    values.grad = None
    ref = [w @ values for w in ws]
    (r0,) = torch.autograd.grad(ref[0].pow(2).sum() + ref[1].sum(), ws[0], retain_graph=True)
    (ref[1].pow(2).sum() + 3 * ref[2].sum()).backward()
    torch.testing.assert_close(g0, r0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(deferred, values.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("amp", [False, True], ids=["float64", "float64-under-bf16-autocast"])
def test_float64_stays_float64(amp):
    """A float64 model's values are summed in float64 (autocast leaves float64 alone, and so
    does ValueGrads): every gradient equals autograd's per-step one to 1e-12."""
    values, ws = steps(dtype=torch.float64)
    with torch.autocast("cpu", torch.bfloat16, enabled=amp):
        grads = ValueGrads(values)
        ctxs = [grads.context(w) for w in ws]
    assert grads.values.dtype == torch.float64
    loss = sum((c * (t + 1)).pow(2).sum() for t, c in enumerate(ctxs)) + grads.values.sum()
    loss.backward()
    deferred = [values.grad.clone()] + [w.grad.clone() for w in ws]
    values.grad = None
    for w in ws:
        w.grad = None
    ref = sum(((w @ values) * (t + 1)).pow(2).sum() for t, w in enumerate(ws)) + values.sum()
    ref.backward()
    for a, r in zip(deferred, [values.grad] + [w.grad for w in ws]):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell,attention,input_feeding,tf",
                         [("lstm", "bahdanau", True, 1.0), ("gru", "luong", False, 0.5)])
def test_a_float64_model_trains_in_float64(monkeypatch, cell, attention, input_feeding, tf):
    """A float64 model through the training objective on the fast kernels (the fused loss and
    the deferred values' gradient, both taken) gives the objective, the nll and every gradient
    of plain autograd in float64 (the per-step values' gradient, the cross-entropy of the
    logits) to 1e-12."""
    used = []
    monkeypatch.setattr(fast_model, "ValueGrads", lambda v: used.append("values") or ValueGrads(v))
    real = training_loss.projected_cross_entropy
    monkeypatch.setattr(training_loss, "projected_cross_entropy",
                        lambda *a: used.append("loss") or real(*a))

    def run(defer):
        model, b = small_model(cell, attention, input_feeding, defer)
        model.double()
        torch.manual_seed(7)
        if defer:
            out = Objective(model, label_smoothing=0.1)(b.src, b.src_len, b.tgt_in, b.tgt_out, tf)
            objective, nll = out.objective, out.nll
        else:
            logits = model(b.src, b.src_len, b.tgt_in, tf)  # (B, T, V)
            flat = logits.reshape(-1, logits.size(-1)), b.tgt_out.reshape(-1)
            objective = F.cross_entropy(*flat, ignore_index=PAD, reduction="sum",
                                        label_smoothing=0.1)
            nll = F.cross_entropy(*flat, ignore_index=PAD, reduction="sum").item()
        objective.backward()
        return objective.detach(), nll, [p.grad.clone() for p in model.parameters()]

    ref_objective, ref_nll, ref_grads = run(False)
    assert not used
    objective, nll, grads = run(True)
    assert sorted(set(used)) == ["loss", "values"]
    assert objective.dtype == torch.float64
    torch.testing.assert_close(objective, ref_objective, rtol=1e-12, atol=1e-12)
    assert nll == pytest.approx(ref_nll, rel=1e-12)
    names = [n for n, _ in small_model()[0].named_parameters()]
    for name, a, r in zip(names, grads, ref_grads):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12, msg=lambda m: f"{name}: {m}")


def test_double_backward_is_refused():
    values, ws = steps()
    grads = ValueGrads(values)
    (g,) = torch.autograd.grad(grads.context(ws[0]).pow(2).sum(), values, create_graph=True)
    with pytest.raises(RuntimeError):
        g.pow(2).sum().backward()


def test_a_batch_holds_nothing_once_its_graph_is_gone():
    """No reference cycle: with the cycle collector off, a training step's ValueGrads is freed
    as soon as its loss is, with or without a backward."""
    model, b = small_model()
    alive = []
    real = fast_model.ValueGrads

    def tracked(v):
        sink = real(v)
        alive.append(weakref.ref(sink))
        return sink

    gc.collect()
    gc.disable()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fast_model, "ValueGrads", tracked)
            for backward in (True, False):
                out = Objective(model)(b.src, b.src_len, b.tgt_in, b.tgt_out, 1.0)
                if backward:
                    out.objective.backward()
                del out
        assert len(alive) == 2 and all(r() is None for r in alive)
    finally:
        gc.enable()
