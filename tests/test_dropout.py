"""seq2seq.kernels.dropout: nn.Dropout's distribution and gradient with a cheaper mask on the CPU."""

import pytest
import torch

from seq2seq.kernels.dropout import Dropout, dropout


def test_keeps_one_minus_p_and_scales_the_kept():
    torch.manual_seed(0)
    x = torch.rand(200_000) + 0.5  # no zeros of its own
    p = 0.3
    y = dropout(x, p)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005  # 200k draws: std 0.001
    torch.testing.assert_close(y[kept], x[kept] / (1 - p))


def test_gradient_is_the_mask():
    torch.manual_seed(1)
    x = torch.randn(64, 16, 32, requires_grad=True)
    y = dropout(x, 0.2)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, (y / x).detach())  # 0 where dropped, 1 / (1 - p) where kept


def test_eval_mode_and_p_zero_are_the_identity():
    x = torch.randn(8, 5)
    m = Dropout(0.5).eval()
    assert torch.equal(m(x), x)
    assert torch.equal(dropout(x, 0.0), x)
    assert torch.equal(dropout(x, 0.5, training=False), x)


def test_seeded_and_dtype_kept():
    x = torch.randn(32, 10).to(torch.bfloat16)
    torch.manual_seed(3)
    a = Dropout(0.25)(x)
    torch.manual_seed(3)
    b = Dropout(0.25)(x)
    assert a.dtype == torch.bfloat16 and torch.equal(a, b)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_same_statistics_as_nn_dropout(p):
    torch.manual_seed(2)
    x = torch.ones(100_000)
    ours = Dropout(p)(x)
    ref = torch.nn.Dropout(p)(x)
    assert abs(ours.mean().item() - ref.mean().item()) < 0.02  # both have mean 1
    assert set(ours.unique().tolist()) == set(ref.unique().tolist())
