"""The dynamic oracle of the minimal edit: the next tokens that keep the best reachable output.

For the toy tasks whose output is not position-aligned with a fixed reference path (commands,
dates, number words: :data:`seq2seq.compare.oracle.EDIT_ORACLE_TASKS`), the best output is the
reference ``r`` (token ids, ``n`` of them, then EOS), and the oracle after any prefix ``p`` is
the minimal edit. With ``D`` the Levenshtein distance over pieces, every completion ``s`` has
``D(p + s, r) >= m(p) = min_j D(p, r[:j])`` (an alignment of ``p + s`` with ``r`` splits ``r``
where ``p`` ends), and ``p + r[j:]`` reaches it, so ``m(p)`` is the distance of the best output
still reachable. The oracle's next tokens are

    O(p) = {r[j] : D(p, r[:j]) = m(p)}    (r[n] = EOS: EOS when j = n is among the argmins)

exactly the tokens ``a`` with ``m(p + a) = m(p)``; any other token costs one edit more (and
EOS outside ``O(p)`` ends the output at ``D(p, r) > m(p)``). After the gold prefix ``r[:l]``
the argmin is ``j = l`` alone, ``O = {r[l]}``: the position-aligned oracle.

Per sentence the row ``D(p, r[:j])``, ``j = 0..n``, is kept and advanced by one token per
step (O(n)), batched: ``refs (B, N + 1)`` holds each reference then EOS, padded with PAD;
``lens (B,)`` the ``n`` of each; ``row (B, N + 1)`` long, ``FAR`` past each ``n``.
"""

from torch import Tensor

#: the distance written past each reference's end (never an argmin)
FAR = 1 << 30


def start(refs: Tensor, lens: Tensor) -> Tensor:
    """The row of the empty prefix: ``D((), r[:j]) = j``, ``(B, N + 1)``."""
    import torch

    j = torch.arange(refs.size(1), device=refs.device).expand_as(refs)  # (B, N + 1)
    return j.masked_fill(j > lens.unsqueeze(1), FAR)


def advance(row: Tensor, refs: Tensor, lens: Tensor, y: Tensor) -> Tensor:
    """The row after token ``y (B,)`` is appended to each prefix:
    ``D(pa, r[:j]) = min(D(p, r[:j]) + 1, D(p, r[:j-1]) + [a != r[j-1]], D(pa, r[:j-1]) + 1)``;
    the last term (a chain along ``j``) as ``cummin_i<=j (t_i - i) + j``."""
    import torch

    j = torch.arange(refs.size(1), device=refs.device)  # (N + 1,)
    t = row + 1  # (B, N + 1): a deleted
    sub = row[:, :-1] + (refs[:, :-1] != y.unsqueeze(1)).long()  # (B, N): a against r[j-1]
    t[:, 1:] = torch.minimum(t[:, 1:], sub)
    new = torch.cummin(t - j, dim=1).values + j  # (B, N + 1): r[j-1] inserted
    return new.masked_fill(j > lens.unsqueeze(1), FAR)


def oracle_sets(row: Tensor, refs: Tensor, vocab_size: int) -> Tensor:
    """``O(p)`` per sentence as a ``(B, V)`` bool mask: the tokens ``r[j]`` (EOS at ``j = n``)
    at the row's minima."""
    import torch

    best = row == row.min(1, keepdim=True).values  # (B, N + 1); FAR is never the minimum
    hits = torch.zeros(row.size(0), vocab_size, device=row.device)  # (B, V)
    return hits.scatter_add_(1, refs, best.float()) > 0


def set_nll(logits: Tensor, sets: Tensor) -> Tensor:
    """``-log sum_{o in O} p(o)`` per row: ``logits (B, V)``, ``sets (B, V)`` -> ``(B,)``."""
    import torch

    logp = torch.log_softmax(logits.float(), -1)  # (B, V)
    return -torch.logsumexp(logp.masked_fill(~sets, float("-inf")), -1)
