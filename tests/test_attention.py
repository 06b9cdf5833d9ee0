"""Attention: weights are a distribution over the valid source positions, shapes as documented;
the fast classes (seq2seq.kernels.fast_attention) compute what the plain ones compute, with their
precision regions under CPU bf16 autocast."""

import pytest
import torch

from seq2seq.kernels.fast_attention import FastBahdanauAttention, FastLuongAttention
from seq2seq.model.attention import BahdanauAttention, LuongAttention
from seq2seq.model.rnn import length_mask

B, S, TQ = 3, 7, 4
HQ, K, A = 6, 10, 5  # query (decoder hidden), key (encoder output, 2H), Bahdanau's hidden
SRC_LEN = torch.tensor([7, 2, 1])


KINDS = ["bahdanau", "luong", "fast-bahdanau", "fast-luong"]


def make(kind):
    """The attention ``kind`` (``fast-`` for the fast class), and its key size."""
    torch.manual_seed(0)
    if kind.endswith("bahdanau"):
        cls = FastBahdanauAttention if kind.startswith("fast") else BahdanauAttention
        return cls(HQ, K, A), A
    cls = FastLuongAttention if kind.startswith("fast") else LuongAttention
    return cls(HQ, K), HQ


def inputs(scale=1.0):
    g = torch.Generator().manual_seed(1)
    enc_out = torch.randn(B, S, K, generator=g) * scale  # (B, S, 2H)
    query = torch.randn(B, TQ, HQ, generator=g) * scale  # (B, Tq, Hq)
    pad_mask = ~length_mask(SRC_LEN, S)  # (B, S) True at padding
    return enc_out, query, pad_mask


@pytest.mark.parametrize("scale", [1.0, 30.0], ids=["normal", "large-scores"])
@pytest.mark.parametrize("kind", KINDS)
def test_weights_sum_to_one_and_are_zero_on_padding(kind, scale):
    attn, key_size = make(kind)
    enc_out, query, pad_mask = inputs(scale)
    keys = attn.keys(enc_out)
    assert keys.shape == (B, S, key_size)
    ctx, weights = attn(query, keys, enc_out, pad_mask)
    assert ctx.shape == (B, TQ, K)
    assert weights.shape == (B, TQ, S)
    assert torch.isfinite(weights).all() and torch.isfinite(ctx).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, TQ), atol=1e-6, rtol=0)
    assert torch.all(weights.masked_select(pad_mask.unsqueeze(1)) == 0)
    assert torch.all(weights >= 0)
    assert torch.all(weights[2, :, 0] == 1)  # a one-token source gets all the weight


@pytest.mark.parametrize("kind", KINDS)
def test_padded_encoder_states_neither_count_nor_get_gradient(kind):
    attn, _ = make(kind)
    enc_out, query, pad_mask = inputs()
    enc_out.requires_grad_()
    ctx, weights = attn(query, attn.keys(enc_out), enc_out, pad_mask)
    ctx.sum().backward()
    assert torch.all(enc_out.grad[pad_mask] == 0)
    assert enc_out.grad[~pad_mask].abs().sum() > 0

    garbage = enc_out.detach().clone()
    garbage[pad_mask] = torch.randn(int(pad_mask.sum()), K) * 100
    ctx_g, weights_g = attn(query, attn.keys(garbage), garbage, pad_mask)
    torch.testing.assert_close(ctx_g, ctx.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(weights_g, weights, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_queries_at_once_equal_queries_one_at_a_time(kind):
    """The fast path attends with the whole target at once; stepping attends one query at a
    time. Attention is stateless, so both give the same context and weights."""
    attn, _ = make(kind)
    enc_out, query, pad_mask = inputs()
    keys = attn.keys(enc_out)
    ctx, weights = attn(query, keys, enc_out, pad_mask)
    for t in reversed(range(TQ)):  # any order: no state kept between calls
        ctx_t, w_t = attn(query[:, t:t + 1], keys, enc_out, pad_mask)  # (B, 1, 2H), (B, 1, S)
        torch.testing.assert_close(ctx_t[:, 0], ctx[:, t], atol=1e-6, rtol=0)
        torch.testing.assert_close(w_t[:, 0], weights[:, t], atol=1e-6, rtol=0)


def test_scores_follow_the_papers():
    """Bahdanau: v^T tanh(W_q q + W_k k); Luong general: q^T W_a k (checked on one pair)."""
    enc_out, query, pad_mask = inputs()
    bahdanau, _ = make("bahdanau")
    luong, _ = make("luong")
    q, k = query[0, 0], enc_out[0]  # (Hq,), (S, 2H)
    with torch.no_grad():
        for attn, score in [
            (bahdanau, lambda: bahdanau.v(torch.tanh(bahdanau.query_proj(q) + bahdanau.key_proj(k))).squeeze(-1)),
            (luong, lambda: luong.key_proj(k) @ q),
        ]:
            _, weights = attn(query, attn.keys(enc_out), enc_out, pad_mask)
            torch.testing.assert_close(weights[0, 0], torch.softmax(score(), -1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["bahdanau", "luong"])
def test_fast_equals_plain_in_float32(kind):
    """Same weights, same numbers: the fast classes differ only under CPU autocast."""
    plain, _ = make(kind)
    fast, _ = make(f"fast-{kind}")
    enc_out, query, pad_mask = inputs()
    for q in (query, query[:, :1]):  # many steps, one step
        ref = plain(q, plain.keys(enc_out), enc_out, pad_mask)
        out = fast(q, fast.keys(enc_out), enc_out, pad_mask)
        for a, b in zip(out, ref):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("kind", ["fast-bahdanau", "fast-luong"])
def test_under_bf16_autocast_many_steps_attend_in_float32(kind):
    """On the CPU under bf16 autocast, a query of many steps (the teacher-forced fast path)
    scores and mixes in float32, each (target, source length) pair being a new oneDNN
    primitive in bf16; one step at a time mixes in bf16. Both agree with float32."""
    attn, _ = make(kind)
    enc_out, query, pad_mask = inputs()
    ref, ref_w = attn(query, attn.keys(enc_out), enc_out, pad_mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        keys = attn.keys(enc_out)
        many, many_w = attn(query, keys, enc_out, pad_mask)
        one, _ = attn(query[:, :1], keys, enc_out, pad_mask)
    assert many.dtype == many_w.dtype == torch.float32
    assert one.dtype == torch.bfloat16
    torch.testing.assert_close(many, ref, rtol=0.03, atol=0.03)  # only the projections in bf16
    torch.testing.assert_close(many_w.sum(-1), torch.ones(B, TQ))
    torch.testing.assert_close(one.float(), ref[:, :1], rtol=0.05, atol=0.05)



def test_under_bf16_autocast_one_bahdanau_step_scores_in_float32():
    """One step under CPU bf16 autocast (decoding, input feeding): the additive scores are
    computed in float32 (torch.tanh is several times slower in bf16 on the CPU), from float32
    keys cast once by keys() and the bf16 query projection; the context product stays bf16.
    Gradients reach every parameter and the keys' input."""
    attn, _ = make("fast-bahdanau")
    enc_out, query, pad_mask = inputs()
    enc_out.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        keys = attn.keys(enc_out)
        ctx, weights = attn(query[:, :1], keys, enc_out, pad_mask)
        q = attn.query_proj(query[:, :1])  # (B, 1, A) bf16, as forward computes it
    assert keys.dtype == torch.float32 and ctx.dtype == torch.bfloat16
    assert weights.dtype == torch.float32
    scores = torch.tanh(q.float().unsqueeze(2) + keys.unsqueeze(1)) @ attn.v.weight.t()
    expect = torch.softmax(scores.squeeze(-1).masked_fill(pad_mask.unsqueeze(1), float("-inf")), -1)
    torch.testing.assert_close(weights, expect, atol=1e-6, rtol=0)
    ref_ctx, _ = attn(query[:, :1], attn.keys(enc_out), enc_out, pad_mask)  # float32
    torch.testing.assert_close(ctx.float(), ref_ctx, rtol=0.05, atol=0.05)
    ctx.float().sum().backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert enc_out.grad is not None and torch.isfinite(enc_out.grad).all()


def test_a_float64_attention_under_autocast_stays_float64():
    """Autocast leaves float64 alone, and so does the float32 scoring of one step."""
    attn, _ = make("fast-bahdanau")
    attn = attn.double()
    enc_out, query, pad_mask = (t.double() if t.is_floating_point() else t for t in inputs())
    ref, ref_w = attn(query[:, :1], attn.keys(enc_out), enc_out, pad_mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        keys = attn.keys(enc_out)
        ctx, weights = attn(query[:, :1], keys, enc_out, pad_mask)
    assert keys.dtype == ctx.dtype == weights.dtype == torch.float64
    torch.testing.assert_close(ctx, ref)
