"""Minimum risk training (Shen et al., 2016, "Minimum risk training for neural machine
translation"): the expected cost of the model's own samples, with ``train.objective: mrt``.

    risk = MinimumRisk(cfg.mrt, tok, limit)
    costs = risk(model, src, src_len, tgt_out)      # (B,) expected cost per sentence
    costs.mean().backward()

For each sentence ``x`` with reference ``y``, ``mrt.samples`` candidates are drawn from the
model (temperature 1, the model in eval mode, without gradient: greedy search with a
:class:`seq2seq.decoding.sampling.Sampler`), deduplicated, joined by the reference
(``mrt.include_reference``), and the risk is

    R(x) = sum_c Q(c) cost(c, y),    Q(c) = exp(alpha log P(c|x)) / sum_c' exp(alpha log P(c'|x))

with ``alpha`` = ``mrt.sharpness`` and ``cost = 1 - score / 100`` (sacreBLEU's smoothed sentence
BLEU or sentence chrF of the detokenized texts, as evaluation scores them). The gradient flows
through ``log P(c|x)``: each candidate + EOS is scored by a teacher-forced pass of the model
(masked on padding). A sample cut at the output limit without EOS is scored as if it ended
there (EOS appended). Shen et al. sample 100 candidates per sentence, with alpha 5e-3 and the
cost -sBLEU in [-1, 0]: ours is that plus 1, which leaves the gradient unchanged (Q sums to 1
over the candidates), so their alpha is ours (``mrt.sharpness`` scales log P, not the cost).
"""

from typing import Callable, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from sacrebleu.metrics import BLEU, CHRF
from torch import Tensor, nn

from seq2seq.data.batching import IdPairs, bucket_batches, iterate, pad, unpad
from seq2seq.data.lengths import OutputLimit
from seq2seq.data.tokenizer import BOS, EOS, PAD
from seq2seq.decoding.sampling import Sampler, sample_keys
from seq2seq.decoding.search import greedy

Candidates = List[List[Tuple[int, ...]]]  # per sentence, its distinct candidates (ids, no EOS)


def sentence_cost(metric: str) -> Callable[[str, str], float]:
    """``cost(hypothesis, reference)`` in ``[0, 1]``: 1 - sacreBLEU's sentence BLEU / 100
    (exp smoothing, effective order) or 1 - sentence chrF / 100."""
    scorer = BLEU(effective_order=True) if metric == "bleu" else CHRF()
    return lambda hyp, ref: 1.0 - scorer.sentence_score(hyp, [ref]).score / 100.0


def references(tgt_out: Tensor) -> List[List[int]]:
    """The target ids of each row of ``tgt_out (B, T)`` (target + EOS, padded), without EOS."""
    return unpad(tgt_out.tolist())


def distinct(samples: Sequence[Sequence[int]], reference: Sequence[int],
             include_reference: bool) -> List[Tuple[int, ...]]:
    """One sentence's candidate set: the samples, each once, in the order drawn; then the
    reference, unless drawn already (with ``include_reference``)."""
    cands = dict.fromkeys(tuple(s) for s in samples)
    if include_reference:
        cands.setdefault(tuple(reference))
    return list(cands)


def sequence_log_probs(model: nn.Module, src: Tensor, src_len: Tensor, owner: Tensor,
                       cands: Sequence[Sequence[int]]) -> Tensor:
    """``log P(c + EOS | x)`` of each candidate by a teacher-forced pass, ``(R,)``.

    ``src (B, S)``, ``src_len (B,)``; ``owner (R,)``: the sentence of each candidate; ``cands``:
    R candidates (ids without BOS/EOS). Only the non-padding positions are projected.
    """
    device = src.device
    tgt_in = pad([[BOS, *c] for c in cands]).to(device)  # (R, T)
    tgt_out = pad([[*c, EOS] for c in cands]).to(device)  # (R, T)
    features = model.features(src[owner], src_len[owner], tgt_in, 1.0)  # (R, T, O)
    mask = tgt_out != PAD  # (R, T)
    out = model.decoder.out
    logits = F.linear(features[mask], out.weight, out.bias)  # (N, V)
    nll = F.cross_entropy(logits.float(), tgt_out[mask], reduction="none")  # (N,)
    row = torch.arange(len(cands), device=device).unsqueeze(1).expand_as(mask)[mask]  # (N,)
    return -torch.zeros(len(cands), device=device).index_add(0, row, nll)  # (R,)


def expected_risk(log_probs: Tensor, costs: Tensor, owner: Tensor, batch: int,
                  sharpness: float) -> Tensor:
    """``sum_c Q(c) cost(c)`` per sentence, ``(B,)``; ``Q = softmax(sharpness * log_probs)``
    over each sentence's candidates. ``log_probs (R,)``, ``costs (R,)``, ``owner (R,)``."""
    scores = sharpness * log_probs  # (R,)
    top = torch.full((batch,), -torch.inf, device=scores.device).scatter_reduce(
        0, owner, scores.detach(), "amax")  # (B,) for a stable softmax
    e = torch.exp(scores - top[owner])  # (R,)
    z = torch.zeros(batch, device=e.device).index_add(0, owner, e)  # (B,)
    q = e / z[owner]  # (R,)
    return torch.zeros(batch, device=e.device).index_add(0, owner, q * costs)  # (B,)


class MinimumRisk:
    """The expected cost of each sentence of a batch under the model (see the module docstring).

    Args:
        cfg: the ``mrt`` section (:class:`seq2seq.config.MrtConfig`).
        tok: the tokenizer: candidates and references are detokenized to be scored.
        limit: the output limit the samples stop at (the one learned from the training data).

    Call: ``model``, ``src (B, S)``, ``src_len (B,)``, ``tgt_out (B, T)``, ``seed`` (of the
    samples' random numbers; None: drawn from torch's generator) -> ``(B,)``, differentiable.
    """

    def __init__(self, cfg, tok, limit: OutputLimit) -> None:
        self.cfg, self.tok, self.limit = cfg, tok, limit
        self.cost = sentence_cost(cfg.cost)

    def candidates(self, model: nn.Module, src: Tensor, src_len: Tensor,
                   refs: List[List[int]], seed: int) -> Candidates:
        """``mrt.samples`` draws per sentence, in eval mode, deduplicated (:func:`distinct`)."""
        k, was_training = self.cfg.samples, model.training
        model.eval()
        try:
            pick = Sampler(sample_keys(seed, range(len(refs)), k, src.device))
            hyps = greedy(model, src.repeat_interleave(k, 0), src_len.repeat_interleave(k, 0),
                          self.limit.a, self.limit.b, pick=pick).hyps  # B * k, by sentence
        finally:
            model.train(was_training)
        return [distinct(hyps[i * k:(i + 1) * k], ref, self.cfg.include_reference)
                for i, ref in enumerate(refs)]

    def costs(self, cands: Candidates, refs: List[List[int]]) -> List[float]:
        """Each candidate's cost against its sentence's reference, flattened."""
        ref_text = self.tok.decode_tgt(refs)
        hyp_text = self.tok.decode_tgt([c for cs in cands for c in cs])
        owners = [i for i, cs in enumerate(cands) for _ in cs]
        return [self.cost(h, ref_text[i]) for h, i in zip(hyp_text, owners)]

    def risk(self, model: nn.Module, src: Tensor, src_len: Tensor, cands: Candidates,
             costs: Sequence[float]) -> Tensor:
        """The expected cost per sentence ``(B,)`` over given candidates and their costs."""
        owner = torch.tensor([i for i, cs in enumerate(cands) for _ in cs], device=src.device)
        flat = [c for cs in cands for c in cs]
        log_probs = sequence_log_probs(model, src, src_len, owner, flat)  # (R,)
        cost = torch.tensor(costs, dtype=log_probs.dtype, device=src.device)  # (R,)
        return expected_risk(log_probs, cost, owner, len(cands), self.cfg.sharpness)

    def __call__(self, model: nn.Module, src: Tensor, src_len: Tensor, tgt_out: Tensor,
                 seed=None) -> Tensor:
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()))  # the run's seeded, saved generator
        refs = references(tgt_out)
        cands = self.candidates(model, src, src_len, refs, seed)
        return self.risk(model, src, src_len, cands, self.costs(cands, refs))


def mean_risk(model: nn.Module, data: IdPairs, tok, cfg, limit: OutputLimit, device) -> float:
    """The mean expected cost per sentence of ``data`` (validation: the model in eval mode,
    the samples' random numbers from ``train.seed``, the same at every validation)."""
    risk, total = MinimumRisk(cfg.mrt, tok, limit), 0.0
    batches = bucket_batches([len(s) for s in data.src], [len(t) for t in data.tgt],
                             cfg.decode.batch_size)
    with torch.no_grad():
        for n, batch in enumerate(iterate(data, batches)):
            batch = batch.to(device)
            total += float(risk(model, batch.src, batch.src_len, batch.tgt_out,
                                cfg.train.seed + n).sum())
    return total / max(1, len(data.src))
