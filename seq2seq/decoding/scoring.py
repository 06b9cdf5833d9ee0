"""Forced decoding: the model's log-probability of given translations (``seq2seq score``).

    models, tok, cfg, device = load_for_decoding(["runs/m"])   # seq2seq.load
    pairs = score_pairs(models, tok, sources, targets)         # one PairScore per pair
    corpus_figures(pairs)                                      # log-prob, tokens, perplexity

Teacher-forced (the default), the decoder reads the given target: ``log P(y | x) = sum_t log
p(y_t | y_<t, x)`` over the target's pieces and EOS, the quantity training minimizes. Free
running, the decoder is fed its own greedy predictions (``y_<t`` replaced by ``ŷ_<t``) for as
many steps as the target has, and the same figures are read off for the given target: the
per-sentence gap between the two is exposure bias (Ranzato et al., 2016). Batched over pairs.
"""

import math
from typing import Dict, List, NamedTuple, Sequence

import torch
from torch import Tensor

from seq2seq.data.batching import bucket_batches, collate
from seq2seq.data.tokenizer import BOS, PAD
from seq2seq.kernels.argmax import argmax

from .ensemble import Ensemble


class PairScore(NamedTuple):
    """One pair's figures."""

    log_prob: float  # log P(target pieces + EOS | source), natural log
    tokens: int  # target pieces + 1 (EOS)

    @property
    def per_token(self) -> float:
        return self.log_prob / self.tokens


@torch.inference_mode()
def token_log_probs(model, src: Tensor, src_len: Tensor, tgt_in: Tensor, tgt_out: Tensor,
                    free_running: bool = False) -> Tensor:
    """``(B, T)`` log-probabilities of ``tgt_out`` (target + EOS, PAD-padded), 0 at padding.

    ``model``: a model or an :class:`~seq2seq.decoding.ensemble.Ensemble`. Teacher-forced, each step is
    fed ``tgt_in`` (BOS + target); ``free_running``, BOS and then the argmax of the previous
    step (PAD never, as in greedy search).
    """
    models = Ensemble.of(model)
    if free_running:
        state = models.start(src, src_len)
        y = torch.full((src.size(0),), BOS, dtype=torch.long, device=src.device)
        steps = []
        for _ in range(tgt_out.size(1)):
            scores, state, _ = models.step(y, state)  # (B, V)
            steps.append(torch.log_softmax(scores.float(), -1))
            scores[:, PAD] = float("-inf")
            y = argmax(scores)  # (B,)
        logp = torch.stack(steps, dim=1)  # (B, T, V)
    else:
        logp = models.teacher_forced(src, src_len, tgt_in)  # (B, T, V)
    picked = logp.gather(2, tgt_out.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked.masked_fill(tgt_out == PAD, 0.0)


def score_pairs(model, tok, sources: Sequence[str], targets: Sequence[str],
                batch_size: int = 64, device="cpu", free_running: bool = False,
                progress: bool = False) -> List[PairScore]:
    """One :class:`PairScore` per pair, in order (pairs are batched by length)."""
    from tqdm import tqdm

    src, tgt = tok.encode_src(sources), tok.encode_tgt(targets)
    out: List[PairScore] = [PairScore(0.0, 0)] * len(src)
    batches = bucket_batches([len(s) for s in src], [len(t) for t in tgt], batch_size)
    for b in tqdm(batches, desc="score", unit="batch", disable=not progress, leave=False):
        batch = collate([src[i] for i in b], [tgt[i] for i in b], b).to(device)
        lp = token_log_probs(model, batch.src, batch.src_len, batch.tgt_in, batch.tgt_out,
                             free_running)  # (B, T)
        for i, total in zip(b, lp.double().sum(1).tolist()):
            out[i] = PairScore(total, len(tgt[i]) + 1)
    return out


def corpus_figures(pairs: Sequence[PairScore]) -> Dict[str, float]:
    """Summed log-probability and tokens, per-token average and perplexity of a set of pairs."""
    total = sum(p.log_prob for p in pairs)
    tokens = sum(p.tokens for p in pairs)
    per_token = total / max(1, tokens)
    return {"pairs": len(pairs), "log_prob": total, "tokens": tokens, "per_token": per_token,
            "ppl": math.exp(min(700.0, -per_token))}
