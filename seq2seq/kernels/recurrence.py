r"""The hand-written recurrence: one layer and direction of an LSTM or GRU over all time steps,
as one ``torch.autograd.Function`` with its own backward.

It computes what :class:`seq2seq.model.rnn.ManualRNN`'s loop over :mod:`seq2seq.model.cells`
computes (the reference it is tested against, tests/test_cpu_kernels.py);
:class:`seq2seq.kernels.fast_rnn.FastManualRNN` runs it when autograd is recording and autocast
is off (``model.impl: manual`` with ``model.kernels: fast`` and ``model.manual_backward:
handwritten``, the defaults). Under plain autograd the manual layer records a dozen small ops
per step, keeps every intermediate, and runs each weight gradient as ``T`` small matmuls. Here:

- forward: per step, one ``(B, H) @ (H, G*H)`` matmul (``b_hh`` included) and the gate
  arithmetic; the gate activations, the state each step starts from and (LSTM) ``c_{t-1}`` and
  ``tanh(c_t)`` are written into ``(B, T, .)`` buffers.
- backward: the factors of the gate gradients that do not depend on the incoming gradient
  (``sigma'``, ``tanh'`` and their products with the saved activations) for all steps at once;
  then per step a few elementwise ops and one ``(B, G*H) @ (G*H, H)`` matmul, the gate gradients
  written into a ``(B, T, G*H)`` buffer; after the loop ``dW_hh`` and ``db_hh`` are one matmul
  and one sum over all steps.

The input projection ``gi = x @ W_ih^T + b_ih`` is computed outside (one matmul over all steps,
as in ``ManualRNN``) and its gradient returned, so autograd handles ``W_ih``, ``b_ih`` and ``x``.

Gate order and equations are those of :mod:`seq2seq.model.cells` (``nn.LSTM``: i, f, g, o;
``nn.GRU``: r, z, n). Padding: where ``valid[b, t]`` is False the state of sequence ``b`` passes
through step ``t`` unchanged (it has ended, or for the reverse direction not yet started), while
``out[b, t]`` is still the cell's output at that step, exactly as in ``ManualRNN``.

Speed notes (torch 2.13 CPU, measured; ``scripts/bench.py layer`` compares the fast layer with
and without oneDNN, the plain loop and ``nn.LSTM``/``nn.GRU``): the matmuls are most of the time,
so the per-step ones run through oneDNN with the weight reordered once per call
(:mod:`seq2seq.kernels.onednn`, for float32 CPU tensors with ``prepack``; else plain
``torch.addmm``). The LSTM's ``g`` gate shares one ``sigmoid`` call with the other three
gates, as ``tanh(x) = 2 sigmoid(2x) - 1``: on an AMD EPYC (one thread, torch 2.13) a
``(64, 512)`` ``torch.tanh`` took 84 us against 14 us for ``torch.sigmoid`` and 28 us for the
sigmoid form, and the shared call made the recurrence 3-4% faster forward and about 2% faster
forward + backward than a ``torch.tanh`` for ``g`` (B, T, H = 64, 30, 512; 64, 20, 256; 32, 50,
512). ``tanh(c_t)`` and the GRU's ``n`` gate use ``torch.tanh`` (:func:`_tanh`).
"""

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .onednn import linear, use_prepack


def _tanh(x: Tensor, out: Tensor) -> Tensor:
    """``tanh(x)`` into ``out``, by ``torch.tanh``: for ``tanh(c_t)`` and the GRU's ``n`` gate
    (a call of their own either way) ``2 sigmoid(2x) - 1`` measured the same within noise on an
    AMD EPYC (the recurrence's forward + backward -2% to +2%), and on an Intel Xeon with AMX
    ``torch.tanh`` is 2.5x faster than it (84 against 207 us at (64, 19, 256)). The ``g`` gate
    is different: it shares the other gates' sigmoid call (see the module docstring)."""
    return torch.tanh(x, out=out)


class Recurrence(torch.autograd.Function):
    """``(gi, h0, c0, weight_hh, bias_hh, valid, reverse, prepack) -> (out, h_n, c_n)``.

    Shapes: ``gi (B, T, G*H)``; ``h0``, ``c0`` ``(B, H)`` (``c0`` None for GRU, which tells the
    cells apart); ``weight_hh (G*H, H)``, ``bias_hh (G*H,)``; ``valid (B, T, 1)`` bool or None;
    ``out (B, T, H)``; ``h_n``, ``c_n`` ``(B, H)`` (``c_n`` None for GRU). Use :func:`recurrence`.
    """

    @staticmethod
    def forward(ctx, gi, h0, c0, weight_hh, bias_hh, valid, reverse, prepack):
        B, T, GH = gi.shape
        H = h0.size(1)
        lstm = c0 is not None
        mm = linear(weight_hh, bias_hh, B, prepack)  # h -> h @ W_hh^T + b_hh, (B, G*H)
        steps = range(T - 1, -1, -1) if reverse else range(T)
        out = gi.new_empty(B, T, H)
        acts = gi.new_empty(B, T, GH)  # gate activations: i, f, g, o or r, z, n
        h_prev = gi.new_empty(B, T, H)  # the state each step starts from
        h = h0
        if lstm:
            c_prev = gi.new_empty(B, T, H)
            tanh_cs = gi.new_empty(B, T, H)  # tanh(c_t)
            c = c0
            for t in steps:
                h_prev[:, t] = h
                c_prev[:, t] = c
                gates = mm(h).add_(gi[:, t])  # (B, 4H)
                gates[:, 2 * H:3 * H].mul_(2)  # g = tanh(x) = 2 sigmoid(2x) - 1: one sigmoid call
                a = torch.sigmoid(gates, out=acts[:, t])
                i, f, g, o = a.chunk(4, dim=1)  # 4 x (B, H)
                g.mul_(2).sub_(1)
                c_t = torch.addcmul(f * c, i, g)  # (B, H)
                h_t = torch.mul(o, _tanh(c_t, out=tanh_cs[:, t]), out=out[:, t])  # (B, H)
                if valid is None:
                    h, c = h_t, c_t
                else:  # freeze the state of sequences that have ended (or not yet started)
                    m = valid[:, t]  # (B, 1)
                    h, c = torch.where(m, h_t, h), torch.where(m, c_t, c)
            ctx.save_for_backward(weight_hh, valid, acts, h_prev, c_prev, tanh_cs, out)
        else:
            gh_n = gi.new_empty(B, T, H)  # W_hn h + b_hn, which r multiplies
            for t in steps:
                h_prev[:, t] = h
                gh = mm(h)  # (B, 3H)
                a = acts[:, t]
                r, z, n = a.chunk(3, dim=1)  # 3 x (B, H)
                torch.sigmoid(gi[:, t, :2 * H] + gh[:, :2 * H], out=a[:, :2 * H])
                gh_n[:, t] = gh[:, 2 * H:]
                _tanh(torch.addcmul(gi[:, t, 2 * H:], r, gh[:, 2 * H:]), out=n)
                h_t = torch.addcmul(n, z, h - n, out=out[:, t])  # (1 - z) n + z h, (B, H)
                h = h_t if valid is None else torch.where(valid[:, t], h_t, h)
            ctx.save_for_backward(weight_hh, valid, acts, h_prev, gh_n)
            c = None
        ctx.reverse, ctx.prepack, ctx.lstm = reverse, prepack, lstm
        return out, h, c

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn, d_cn):
        if ctx.lstm:
            weight_hh, valid, acts, h_prev, c_prev, tanh_cs, out = ctx.saved_tensors
        else:
            weight_hh, valid, acts, h_prev, gh_n = ctx.saved_tensors
        B, T, GH = acts.shape
        H = h_prev.size(2)
        mm_t = linear(weight_hh.t().contiguous(), None, B, ctx.prepack)  # dg -> dg @ W_hh
        steps = range(T) if ctx.reverse else range(T - 1, -1, -1)  # forward's order, reversed
        mask = None if valid is None else valid.to(acts.dtype)  # (B, T, 1)
        dh = d_hn if d_hn is not None else acts.new_zeros(B, H)
        # k: the factors of the gate gradients that do not depend on the incoming gradient, for
        # all steps at once (in as few passes over memory as possible: that is their cost); the
        # loop turns k in place into the gradients of the gate pre-activations, per step
        # d_gates[:, t] = k[:, t] * dc_t (LSTM i, f, g), * dh_t (LSTM o, GRU)
        if ctx.lstm:
            i, f, g, o = acts.chunk(4, dim=2)  # 4 x (B, T, H)
            k = torch.empty_like(acts)  # (B, T, 4H)
            k_i, k_f, k_g, k_o = k.chunk(4, dim=2)
            torch.addcmul(acts[..., :2 * H], acts[..., :2 * H], acts[..., :2 * H], value=-1,
                          out=k[..., :2 * H])  # sigma' = s (1 - s) for i and f
            k_i.mul_(g), k_f.mul_(c_prev)  # di/dc_t = g i', df/dc_t = c_{t-1} f'
            torch.addcmul(i, i, torch.mul(g, g, out=k_g), value=-1, out=k_g)  # i (1 - g^2)
            torch.addcmul(out, out, o, value=-1, out=k_o)  # do/dh_t = tanh(c_t) o' (out = o tanh c)
            o_dtanh = torch.addcmul(o, out, tanh_cs, value=-1)  # dc_t/dh_t = o (1 - tanh(c_t)^2)
            k4 = k.view(B, T, 4, H)
            dc = d_cn if d_cn is not None else acts.new_zeros(B, H)
            for t in steps:
                if mask is None:
                    dh_t, dc_t = d_out[:, t] + dh, dc
                else:  # a frozen state passes its gradient straight to the previous step
                    m = mask[:, t]  # (B, 1)
                    dh_m, dc_t = dh * m, dc * m
                    dh_t, dh_pass, dc_pass = d_out[:, t] + dh_m, dh - dh_m, dc - dc_t
                dc_t = torch.addcmul(dc_t, dh_t, o_dtanh[:, t])  # (B, H)
                k4[:, t, :3].mul_(dc_t.unsqueeze(1))
                k4[:, t, 3].mul_(dh_t)
                dh = mm_t(k[:, t])  # (B, H)
                dc = dc_t * f[:, t]
                if mask is not None:
                    dh, dc = dh.add_(dh_pass), dc.add_(dc_pass)
            d_gi = d_gh = k
        else:
            k = torch.addcmul(acts, acts, acts, value=-1)  # sigma' = s (1 - s), (B, T, 3H)
            r, z, n = acts.chunk(3, dim=2)  # 3 x (B, T, H)
            k_r, k_z, k_n = k.chunk(3, dim=2)
            k_n.sub_(n).add_(1).addcmul_(k_n, z, value=-1)  # dn_pre/dh_t = (1 - z)(1 - n^2)
            k_r.mul_(k_n).mul_(gh_n)  # dr_pre/dh_t = r' (W_hn h + b_hn) dn_pre/dh_t
            k_z.mul_(h_prev - n)  # dz_pre/dh_t = z' (h - n)
            d_gi = k  # on the input side ...
            d_gh = k.clone()  # ... and on the hidden side, where the n gate's is times r
            d_gh.view(B, T, 3, H)[:, :, 2].mul_(r)
            d_gi4, d_gh4 = d_gi.view(B, T, 3, H), d_gh.view(B, T, 3, H)
            for t in steps:
                if mask is None:
                    dh_t = d_out[:, t] + dh
                else:
                    dh_m = dh * mask[:, t]
                    dh_t, dh_pass = d_out[:, t] + dh_m, dh - dh_m
                d_gi4[:, t].mul_(dh_t.unsqueeze(1))
                d_gh4[:, t].mul_(dh_t.unsqueeze(1))
                dh = mm_t(d_gh[:, t]).addcmul_(dh_t, z[:, t])  # (B, H)
                if mask is not None:
                    dh.add_(dh_pass)
            dc = None
        d_gh2 = d_gh.view(B * T, GH)
        d_weight = d_gh2.t() @ h_prev.view(B * T, H)  # (G*H, H), all steps in one matmul
        d_bias = d_gh2.sum(0)  # (G*H,)
        return d_gi, dh, dc, d_weight, d_bias, None, None, None


def recurrence(gi: Tensor, h0: Tensor, c0: Optional[Tensor], weight_hh: Tensor, bias_hh: Tensor,
               valid: Optional[Tensor] = None, reverse: bool = False,
               prepack: Optional[bool] = None) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Run one layer and direction over all steps: ``(out (B, T, H), h_n (B, H), c_n or None)``.

    Args:
        gi: ``(B, T, G*H)`` input projection ``x @ W_ih^T + b_ih`` of all steps (G = 4 for LSTM,
            3 for GRU).
        h0, c0: ``(B, H)`` initial state; ``c0`` is None for GRU (which is what selects GRU).
        weight_hh: ``(G*H, H)``; bias_hh: ``(G*H,)``.
        valid: ``(B, T, 1)`` bool, False where the state is to be left unchanged; None: all valid.
        reverse: run from ``t = T - 1`` down to ``0``.
        prepack: per-step matmuls through oneDNN; None: where
            :func:`seq2seq.kernels.onednn.use_prepack` allows.
    """
    if prepack is None:
        prepack = use_prepack(gi)
    return Recurrence.apply(gi, h0, c0, weight_hh, bias_hh, valid, reverse, prepack)

