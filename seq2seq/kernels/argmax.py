"""The argmax of ``(B, V)`` logits, blocked: the same ids as ``torch.argmax``, faster on the CPU.

Used where a decoding loop picks the best token at every step (greedy search, forced decoding's
free-running mode, the fast decoder's teacher forcing below 1).
"""

import functools

import torch
from torch import Tensor


@functools.lru_cache(maxsize=None)
def _block(vocab_size: int) -> int:
    """A divisor of the vocabulary size near 100 (0: none between 50 and 250)."""
    ds = [d for d in range(50, 251) if vocab_size % d == 0]
    return min(ds, key=lambda d: abs(d - 100)) if ds else 0


def argmax(logits: Tensor) -> Tensor:
    """``logits.argmax(-1)`` of ``(B, V)`` logits: the same ids (the first of tied maxima).

    On the CPU torch's argmax over a long last dimension is slow (about 1 ns an element, 15x
    slower than ``amax``), so the block of ~100 logits holding the maximum is found with
    ``amax`` first and the argmax is taken inside it: 4x faster at (128, 8000).
    """
    B, V = logits.shape
    k = _block(V)
    if logits.device.type != "cpu" or not k or B == 0:
        return logits.argmax(-1)
    if logits.dtype in (torch.bfloat16, torch.float16):  # --bf16: reductions over bf16 are
        logits = logits.float()  # slow here (cast + float32 search: 0.5x the time); exact
    blocks = logits.reshape(B, V // k, k)  # (B, V/k, k)
    best = blocks.amax(-1).argmax(-1)  # (B,) the first block that holds the maximum
    inner = blocks[torch.arange(B, device=logits.device), best]  # (B, k)
    return best * k + inner.argmax(-1)
