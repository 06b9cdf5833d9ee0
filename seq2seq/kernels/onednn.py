"""oneDNN prepacked matmuls: ``x @ W^T + b`` with the weight reordered once for many products.

A decoding loop (the output projection, float32 or bf16) and the hand-written recurrence (its
per-step ``h @ W_hh^T``) multiply by the same weight at every step; oneDNN reorders the weight
into its blocked layout once (``torch.ops.mkldnn._reorder_linear_weight``) and then runs each
product on it (``_linear_pointwise``). These are private ops: they are used for CPU tensors
only when :func:`mkldnn_available` finds that they exist and agree with ``F.linear``, else the
plain ``torch.addmm`` runs. Every caller takes an explicit ``prepack`` choice as well (the fast
layers' constructor argument), so that ``scripts/bench.py`` measures both paths.
"""

import functools
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

Linear = Callable[[Tensor], Tensor]  # x (B, K) -> x @ W^T + b, (B, N)


@functools.lru_cache(maxsize=None)
def mkldnn_available() -> bool:
    """True when torch has the private oneDNN prepacked-linear ops and they agree with F.linear."""
    try:
        ops = torch.ops.mkldnn
        if not (torch.backends.mkldnn.is_available()
                and hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise")):
            return False
        g = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*s, generator=g) for s in ((3, 8), (5, 8), (5,)))
        with torch.autocast("cpu", enabled=False):  # the answer is cached: not bf16's
            y = ops._linear_pointwise(x, ops._reorder_linear_weight(w, 3), b, "none", [], "")
            return bool(torch.allclose(y, F.linear(x, w, b), atol=1e-5))
    except Exception:  # an op missing or refusing this build: use the plain path
        return False


@functools.lru_cache(maxsize=None)
def mkldnn_bf16_supported() -> bool:
    """True when oneDNN runs bf16 products on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older torch without the query
        return False


def use_prepack(x: Tensor, bf16: bool = False) -> bool:
    """Whether the oneDNN path applies to tensors like ``x``: float32 on the CPU, or with
    ``bf16`` also bfloat16 where oneDNN supports it."""
    ok = x.dtype == torch.float32 or bf16 and x.dtype == torch.bfloat16 and mkldnn_bf16_supported()
    return x.device.type == "cpu" and ok and mkldnn_available()


def linear(weight: Tensor, bias: Optional[Tensor], batch: int, prepack: bool) -> Linear:
    """``x -> x @ weight^T + bias`` for ``x (batch, K)``; with ``prepack`` through oneDNN, the
    weight reordered once (the caller checks :func:`use_prepack`), else ``torch.addmm``."""
    if prepack:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, batch)
        return lambda x: torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
    weight_t = weight.t()
    if bias is None:
        return lambda x: torch.mm(x, weight_t)
    return lambda x: torch.addmm(bias, x, weight_t)


def prepacked_linear(weight: Tensor, bias: Optional[Tensor], batch: int) -> Optional[Linear]:
    """``x -> x @ weight^T + bias`` through oneDNN with the weight reordered once, for inference
    loops (no autograd through it); None where that path does not apply (not float32 or bf16
    on the CPU, or the private ops are missing). A bf16 weight (``--bf16``) takes bf16 ``x``
    and gives bf16 results, as ``F.linear`` does (1.6x faster than it at (128, 256) x 8000)."""
    if not use_prepack(weight, bf16=True):
        return None
    return linear(weight.detach(), None if bias is None else bias.detach(), batch, True)
