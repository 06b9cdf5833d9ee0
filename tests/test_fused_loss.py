"""The output projection and the loss in one pass (seq2seq.kernels.projected_loss, chosen by
seq2seq.training.loss.projected_losses): the same losses and gradients as the plain path
(F.linear, then cross-entropy over (B, T, V) logits), with label smoothing, in blocks, under bf16
autocast, in float64, through a retained graph, and as the training objective
(seq2seq.training.objective.Objective)."""

import pytest
import torch
import torch.nn.functional as F

import seq2seq.kernels.projected_loss as loss_mod
from seq2seq.data.batching import collate
from seq2seq.config import ModelConfig
from seq2seq.training.loss import masked_cross_entropy, projected_losses
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.data.tokenizer import PAD
from seq2seq.training.objective import Objective


def problem(seed=0, B=5, T=7, O=16, V=300, bias=True, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(B, T, O, generator=g, dtype=dtype, requires_grad=True)
    weight = (0.3 * torch.randn(V, O, generator=g, dtype=dtype)).requires_grad_()
    b = torch.randn(V, generator=g, dtype=dtype).requires_grad_() if bias else None
    tgt = torch.randint(4, V, (B, T), generator=g)
    tgt[0, 4:] = PAD  # padded ends of different lengths
    tgt[2, 6:] = PAD
    return features, weight, b, tgt


def losses_and_grads(fused, features, weight, bias, tgt, smoothing, scale=0.37):
    params = [p for p in (features, weight, bias) if p is not None]
    for p in params:
        p.grad = None
    out = projected_losses(features, weight, bias, tgt, PAD, smoothing, fused=fused)
    (out.objective * scale).backward()
    return out, [p.grad.clone() for p in params]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk", [3, 256])  # several blocks with a ragged last one; one block
def test_fused_equals_the_plain_path(monkeypatch, smoothing, bias, chunk):
    monkeypatch.setattr(loss_mod, "CHUNK", chunk)
    args = problem(bias=bias)
    plain, g_plain = losses_and_grads(False, *args, smoothing)
    fused, g_fused = losses_and_grads(True, *args, smoothing)
    assert fused.n == plain.n == int((args[3] != PAD).sum())
    assert fused.objective.item() == pytest.approx(plain.objective.item(), rel=1e-6)
    assert fused.nll == pytest.approx(plain.nll, rel=1e-6)
    for a, b in zip(g_fused, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("amp", [False, True], ids=["float64", "float64-under-bf16-autocast"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("chunk", [3, 256])
def test_float64_stays_float64(monkeypatch, smoothing, chunk, amp):
    """A float64 model's fused loss is computed in float64 (autocast leaves float64 alone, and
    so does the fused pass): the objective, the nll and every gradient equal plain autograd's
    in float64 to 1e-12 (float32 inside would be off by about 1e-7)."""
    monkeypatch.setattr(loss_mod, "CHUNK", chunk)
    features, weight, bias, tgt = problem(dtype=torch.float64)
    params = (features, weight, bias)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        fused = projected_losses(features, weight, bias, tgt, PAD, smoothing, fused=True)
    fused.objective.backward()
    g_fused = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    logits = F.linear(features, weight, bias).reshape(-1, weight.size(0))  # (B*T, V)
    ref = F.cross_entropy(logits, tgt.reshape(-1), ignore_index=PAD, reduction="sum",
                          label_smoothing=smoothing)
    ref_nll = F.cross_entropy(logits, tgt.reshape(-1), ignore_index=PAD, reduction="sum")
    ref.backward()
    assert fused.objective.dtype == torch.float64
    tight = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused.objective, ref.detach(), **tight)
    assert fused.nll == pytest.approx(ref_nll.item(), rel=1e-12)
    for a, p in zip(g_fused, params):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, p.grad, **tight)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain"])
def test_a_second_backward_through_a_retained_graph_doubles_the_gradients(fused):
    """``backward(retain_graph=True)`` then ``backward()``: the second adds exactly the first's
    gradients (the fused backward scales its saved gradients out of place)."""
    features, weight, bias, tgt = problem()
    params = (features, weight, bias)
    out = projected_losses(features, weight, bias, tgt, PAD, 0.1, fused=fused)
    loss = out.objective * 0.37
    loss.backward(retain_graph=True)
    once = [p.grad.clone() for p in params]
    loss.backward()
    for a, g in zip(params, once):
        assert torch.equal(a.grad, 2 * g)


def test_plain_path_is_the_masked_cross_entropy_of_the_logits():
    features, weight, bias, tgt = problem()
    logits = F.linear(features, weight, bias)  # (B, T, V)
    ref, n = masked_cross_entropy(logits, tgt, PAD)
    out = projected_losses(features, weight, bias, tgt, PAD, fused=False)
    assert out.n == n and out.objective.item() == pytest.approx(ref.item(), rel=1e-6)


def test_padding_positions_get_no_gradient_and_change_nothing():
    features, weight, bias, tgt = problem()
    _, (g_features, _, _) = losses_and_grads(True, features, weight, bias, tgt, 0.1)
    assert torch.all(g_features[tgt == PAD] == 0)
    assert torch.any(g_features[tgt != PAD] != 0)
    with torch.no_grad():
        features[tgt == PAD] = 1e4  # garbage where the targets are padding
    again, _ = losses_and_grads(True, features, weight, bias, tgt, 0.1)
    first = projected_losses(*problem(), PAD, 0.1, fused=True)
    assert again.objective.item() == pytest.approx(first.objective.item(), rel=1e-6)


def test_the_smoothed_objective_is_reported_apart_from_the_plain_loss():
    args = problem()
    smoothed = projected_losses(*args, PAD, 0.1, fused=True)
    plain = projected_losses(*args, PAD, 0.0, fused=True)
    assert smoothed.nll == pytest.approx(plain.nll, rel=1e-6)
    assert smoothed.objective.item() != pytest.approx(plain.objective.item(), rel=1e-3)


def test_no_gradient_work_without_autograd(monkeypatch):
    args = problem()
    calls = []
    real_mm = torch.mm
    monkeypatch.setattr(torch, "mm", lambda *a, **k: calls.append(1) or real_mm(*a, **k))
    with torch.no_grad():
        out = projected_losses(*args, PAD, 0.0, fused=True)
    assert calls == [1]  # the logits' product only, no gradient products
    assert not out.objective.requires_grad and out.n == int((args[3] != PAD).sum())
    ref = projected_losses(*args, PAD, 0.0, fused=False)
    assert out.nll == pytest.approx(ref.nll, rel=1e-6)


def test_bf16_autocast_stays_close_to_float32():
    args = problem(O=32, V=500)
    ref, g_ref = losses_and_grads(True, *args, 0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp, g_amp = losses_and_grads(True, *args, 0.0)
    assert amp.objective.dtype == torch.float32
    assert amp.objective.item() == pytest.approx(ref.objective.item(), rel=2e-2)
    for a, b in zip(g_amp, g_ref):
        assert a.dtype == b.dtype == torch.float32
        assert (a - b).abs().max() <= 0.05 * b.abs().max()


def test_bf16_pads_ragged_blocks_to_a_few_shapes_and_drops_the_padding(monkeypatch):
    """oneDNN keeps a bf16 primitive per matmul shape: ragged last blocks are padded with zero
    rows (a few shapes over many batch sizes), and the padding reaches neither the losses nor
    the gradients (the same numbers as without padding)."""
    shapes = []
    real_mm = torch.mm
    monkeypatch.setattr(torch, "mm", lambda a, b: shapes.append(a.shape) or real_mm(a, b))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for B in range(3, 23):  # 20 batches, 12 to 140 target tokens
            projected_losses(*problem(seed=B, B=B, T=7, O=32, V=500), PAD, 0.1, fused=True)
    rows = {s[0] for s in shapes}
    assert rows <= {64, 128, 192, 256, 500}  # 500: dW's product, (V, m) @ (m, O)
    args = problem(B=6, O=32, V=500)  # 38 target tokens: one ragged block
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded, g_padded = losses_and_grads(True, *args, 0.1)
        monkeypatch.setattr(loss_mod, "LOW_PRECISION_ROWS", 1)
        plain, g_plain = losses_and_grads(True, *args, 0.1)
    assert padded.n == plain.n == int((args[3] != PAD).sum()) < 64
    assert padded.objective.item() == pytest.approx(plain.objective.item(), rel=1e-5)
    for a, b in zip(g_padded, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("cell,attention,input_feeding,tf",
                         [("lstm", "bahdanau", True, 1.0), ("gru", "luong", False, 1.0),
                          ("gru", "bahdanau", True, 0.5), ("lstm", "none", False, 0.0)])
def test_the_training_forward_equals_the_loss_of_the_logits(cell, attention, input_feeding, tf):
    """Objective(model) (what Trainer calls), fused or not, gives the loss and the gradients of
    the logits that model(...) returns, with dropout on and teacher forcing below 1: the same
    random draws are made in the same order."""
    cfg = ModelConfig(cell=cell, attention=attention, input_feeding=input_feeding,
                      embedding_dim=8, hidden_size=12, dropout=0.2, tie_embeddings=False)
    torch.manual_seed(0)
    model = Seq2Seq.from_config(cfg, 13, 11, PAD).train()
    b = collate([[5, 6, 7, 8], [9, 4], [6, 6, 7]], [[4, 5, 6], [7, 8, 9, 10, 4], [5]], [0, 1, 2])

    def run(fused):
        model.zero_grad()
        torch.manual_seed(7)
        if fused is None:
            logits = model(b.src, b.src_len, b.tgt_in, tf)
            loss, n = masked_cross_entropy(logits, b.tgt_out, PAD)
        else:
            out = Objective(model, fused=fused)(b.src, b.src_len, b.tgt_in, b.tgt_out, tf)
            loss, n = out.objective, out.n
        loss.backward()
        return loss.item(), n, [p.grad.clone() for p in model.parameters()]

    ref = run(None)
    for fused in (False, True):
        loss, n, grads = run(fused)
        assert n == ref[1] and loss == pytest.approx(ref[0], rel=1e-5)
        for a, r in zip(grads, ref[2]):
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kernels", ["fast", "plain"])
def test_the_objective_fuses_with_the_fast_kernels_only(kernels, monkeypatch):
    """Objective(model) with ``fused`` None: the fused pass for a model on the fast kernels
    (on the CPU), the plain path for one on the plain kernels; the same losses either way."""
    import seq2seq.training.loss as training_loss

    calls = []
    real = training_loss.projected_cross_entropy
    monkeypatch.setattr(training_loss, "projected_cross_entropy",
                        lambda *a: calls.append(1) or real(*a))
    cfg = ModelConfig(kernels=kernels, embedding_dim=8, hidden_size=12, dropout=0.0)
    torch.manual_seed(0)
    model = Seq2Seq.from_config(cfg, 13, 11, PAD)
    b = collate([[5, 6, 7, 8], [9, 4], [6, 6, 7]], [[4, 5, 6], [7, 8, 9, 10, 4], [5]], [0, 1, 2])
    out = Objective(model, label_smoothing=0.1)(b.src, b.src_len, b.tgt_in, b.tgt_out)
    assert bool(calls) == (kernels == "fast")
    ref = Objective(model, label_smoothing=0.1, fused=False)(b.src, b.src_len, b.tgt_in,
                                                             b.tgt_out)
    assert out.objective.item() == pytest.approx(ref.objective.item(), rel=1e-5)
    assert out.nll == pytest.approx(ref.nll, rel=1e-5) and out.n == ref.n == 12
