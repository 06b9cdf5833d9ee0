"""The FLOP account of a training step, and the per-thread matmul peaks it is measured against.

Used by ``scripts/bench.py train`` and ``layer``. FLOPs are counted from the shapes: a matmul of
``(M, K) @ (K, N)`` is ``2 M K N``; the backward of a matmul is two matmuls of the same size, so
forward + backward is 3x the forward (elementwise work, softmaxes and the optimizer are not
counted: they are what keeps a step from the peak).

    account = flops_per_target_token(model_cfg, vocab=8000, src_per_tgt=1.05, src_len=14)
    account["total"]            # forward + backward FLOPs per target token
    peaks = matmul_peaks()      # {"mkl": ..., "onednn": ..., "bf16": ...} FLOP/s, this thread
"""

import time
from typing import Dict

import torch


def _rnn(cell: str, input_size: int, hidden: int, layers: int, directions: int) -> float:
    """Forward FLOPs per time step of a recurrent stack (input and recurrent projections)."""
    gates = 4 if cell == "lstm" else 3
    total, size = 0.0, input_size
    for _ in range(layers):
        total += directions * 2 * (size + hidden) * gates * hidden
        size = directions * hidden
    return total


def _keys(cfg) -> float:
    """Forward FLOPs per source token of the attention keys (projected once per batch)."""
    enc_out = (2 if cfg.bidirectional else 1) * cfg.hidden_size
    return 2 * enc_out * cfg.hidden_size if cfg.attention in ("bahdanau", "luong") else 0.0


def key_flops_per_target_token(cfg, src_per_tgt: float) -> float:
    """Forward + backward FLOPs of the attention keys per target token: part of the
    ``encoder`` entry of :func:`flops_per_target_token` (they are computed from the encoder's
    outputs), though the decoder runs them (``Decoder.start``)."""
    return 3 * _keys(cfg) * src_per_tgt


def flops_per_target_token(cfg, vocab: int, src_per_tgt: float, src_len: float
                           ) -> Dict[str, float]:
    """Forward + backward FLOPs per target token of a :class:`seq2seq.config.ModelConfig`, by
    component: ``encoder`` (its recurrence and the attention keys, times the source tokens per
    target token), ``decoder`` (its recurrence), ``attention`` (query, scores over
    ``src_len`` source positions, context, and the combine layer), ``output`` (the output
    projection; the loss's softmax is elementwise) and ``total``."""
    E, H, L = cfg.embedding_dim, cfg.hidden_size, cfg.num_layers
    D = 2 if cfg.bidirectional else 1
    O = E if cfg.tie_embeddings else H
    enc_out = D * H
    enc = _rnn(cfg.cell, E, H, L, D)  # (the bridge runs once per sentence: not counted)
    dec = _rnn(cfg.cell, E + (O if cfg.input_feeding else 0), H, L, 1)
    att, combine_in = 0.0, H
    enc += _keys(cfg)  # the attention keys, once per source token
    if cfg.attention == "bahdanau":
        A = H
        att = 2 * H * A + 2 * src_len * A + 2 * src_len * enc_out  # query, v . tanh(), context
        combine_in = H + enc_out
    elif cfg.attention == "luong":
        att = 2 * src_len * H + 2 * src_len * enc_out  # scores, context
        combine_in = H + enc_out
    att += 2 * combine_in * O
    out = 2 * O * vocab
    fwd = {"encoder": enc * src_per_tgt, "decoder": dec, "attention": att, "output": out}
    account = {k: 3 * v for k, v in fwd.items()}  # forward + backward
    account["total"] = sum(account.values())
    return account


def _best(fn, repeats: int) -> float:
    with torch.no_grad():
        for _ in range(3):
            fn()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    return best


def matmul_peaks(repeats: int = 20, m: int = 2048, k: int = 768, n: int = 2048
                 ) -> Dict[str, float]:
    """FLOP/s of one ``(m, k) @ (k, n)`` product on this thread, best of ``repeats``, by path:
    ``mkl`` (torch's own fp32 ``mm``), ``onednn`` (fp32 through oneDNN with the weight
    prepacked, the fp32 limit; equal to ``mkl`` where the private ops are missing) and
    ``bf16`` (a bf16 ``mm``: oneDNN, AMX or AVX512-BF16 where the CPU has them)."""
    from seq2seq.kernels.onednn import mkldnn_available

    x, w = torch.randn(m, k), torch.randn(n, k)
    flops = 2 * m * k * n
    peaks = {"mkl": flops / _best(lambda: x @ w.t(), repeats)}
    if mkldnn_available():
        ops = torch.ops.mkldnn
        packed = ops._reorder_linear_weight(w, m)
        peaks["onednn"] = flops / _best(
            lambda: ops._linear_pointwise(x, packed, None, "none", [], ""), repeats)
    else:
        peaks["onednn"] = peaks["mkl"]
    xb, wb = x.bfloat16(), w.bfloat16()
    peaks["bf16"] = flops / _best(lambda: xb @ wb.t(), repeats)
    return peaks
