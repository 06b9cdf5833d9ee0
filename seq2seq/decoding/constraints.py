"""What a search may emit: forced target prefixes, no repeated n-grams; the coverage penalty.

    rules = Constraints.make(prefixes=[[5, 9], []], no_repeat_ngram=3)
    banned = rules.banned(history, t, owner, V)       # (R, V) True where a token may not come
    scores = scores.masked_fill(banned, float("-inf"))

Greedy search, sampling and beam search all call :meth:`Constraints.banned` once per step,
for every row at once (no loop over sentences). ``owner`` maps a row of the search (a
sentence, one of its beams or one of its samples) to its sentence in the batch. A forced
prefix token overrides every other rule: the output always starts with the prefix.
"""

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from seq2seq.data.tokenizer import PAD


class Constraints(NamedTuple):
    """Per-sentence rules of one decoding batch."""

    prefix: Optional[Tensor] = None  # (B, P) target ids every output must start with, PAD-padded
    prefix_len: Optional[Tensor] = None  # (B,) prefix lengths (0: no prefix)
    no_repeat_ngram: int = 0  # no n-gram of this many tokens twice in an output (0: off)

    @classmethod
    def make(cls, prefixes: Optional[Sequence[Sequence[int]]] = None, no_repeat_ngram: int = 0,
             device="cpu") -> Optional["Constraints"]:
        """Rules for a batch, or None when there are none (the searches then skip them)."""
        prefix = prefix_len = None
        if prefixes is not None and any(len(p) for p in prefixes):
            from seq2seq.data.batching import pad

            prefix = pad(prefixes).to(device)  # (B, P)
            prefix_len = torch.tensor([len(p) for p in prefixes], device=device)  # (B,)
        if prefix is None and not no_repeat_ngram:
            return None
        return cls(prefix, prefix_len, no_repeat_ngram)

    def min_length(self, owner: Tensor) -> Optional[Tensor]:
        """Per row, the output length a search must allow at least (the prefix, then one
        token or EOS after it), or None without prefixes."""
        return None if self.prefix_len is None else self.prefix_len[owner] + 1

    def banned(self, history: Tensor, t: int, owner: Tensor, vocab_size: int
               ) -> Optional[Tensor]:
        """Tokens that may not come at step ``t``: ``(R, V)`` bool, or None if all may.

        Args:
            history ``(R, t)``: each row's tokens so far (no BOS).
            t: the step (0 for the first output token).
            owner ``(R,)``: each row's sentence in the batch (the row of ``prefix``).
            vocab_size: ``V``.
        """
        banned = None
        n = self.no_repeat_ngram
        if n and t >= n:  # a complete n-gram is needed before one can repeat
            banned = repeated_ngram_ends(history, n, vocab_size)
        if self.prefix is not None and t < self.prefix.size(1):
            forced = t < self.prefix_len[owner]  # (R,)
            if bool(forced.any()):
                only = torch.ones(len(owner), vocab_size, dtype=torch.bool,
                                  device=history.device)  # (R, V)
                only.scatter_(1, self.prefix[owner, t].unsqueeze(1), False)
                if banned is None:
                    banned = torch.zeros_like(only)
                banned = torch.where(forced.unsqueeze(1), only, banned)  # (R, V)
        return banned


def repeated_ngram_ends(history: Tensor, n: int, vocab_size: int) -> Tensor:
    """``(R, V)`` bool: True at the tokens that would complete an ``n``-gram already in the row.

    The last ``n - 1`` tokens of each row (its suffix) are compared with every window of
    ``n - 1`` tokens in it; where one matches, the token after that window is banned (as
    fairseq's ``--no-repeat-ngram-size`` and Hugging Face's ``no_repeat_ngram_size`` do).
    """
    R, t = history.shape
    banned = torch.zeros(R, vocab_size, dtype=torch.bool, device=history.device)  # (R, V)
    if t < n:  # no complete n-gram yet, so nothing can repeat one
        return banned
    windows = history.unfold(1, n, 1)  # (R, t - n + 1, n)
    suffix = history[:, t - n + 1:]  # (R, n - 1)
    match = (windows[:, :, :n - 1] == suffix.unsqueeze(1)).all(-1)  # (R, t - n + 1)
    ends = windows[:, :, n - 1].masked_fill(~match, PAD)  # (R, t - n + 1)
    banned.scatter_(1, ends, True)
    banned[:, PAD] = False  # PAD stands for "no match" here; the searches ban it themselves
    return banned


def coverage_penalty(coverage: Tensor, pad_mask: Tensor, beta: float) -> Tensor:
    """GNMT's coverage penalty (Wu et al., 2016, eq. 14): ``cp = beta * sum_i log(min(c_i, 1))``.

    Args:
        coverage ``(R, S)``: the attention weights each source position received so far,
            summed over the output's steps.
        pad_mask ``(R, S)``: True at source padding (left out of the sum).
        beta: the penalty's weight (0: no penalty).

    Returns ``(R,)``, at most 0: source words that got less than a whole unit of attention
    pull the score down. The coverage is floored at ``1e-6`` so that a word that was never
    attended to costs ``beta * log(1e-6)`` (about ``-13.8 beta``) instead of minus infinity.
    """
    c = coverage.float().clamp(min=1e-6, max=1.0).log().masked_fill(pad_mask, 0.0)  # (R, S)
    return beta * c.sum(-1)
