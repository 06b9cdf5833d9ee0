"""The sentence-level oracle (Zhang, Feng, Meng, You and Liu, 2019, "Bridging the gap between
training and inference for neural machine translation", section 3.2), fed to the decoder with
``teacher_forcing.oracle: sentence``.

    oracle = SentenceOracle(cfg.oracle, tok)
    tgt_in = oracle.feed(model, src, src_len, tgt_in, tgt_out, tf_ratio, scope)   # (B, T)
    logits = model(src, src_len, tgt_in)              # teacher-forced on the mixed input

Per batch, without gradient and in eval mode (no dropout), a beam search of width ``oracle.beam``
whose candidates all have exactly the reference's length ``L`` (EOS, padding and BOS are never
chosen before ``L``; EOS would be forced at ``L`` and is left out: it ends every candidate of a
sentence alike, so it changes neither the candidates nor their order), with Gumbel noise added to
each step's log-probabilities (Zhang et al.'s noise; ``oracle.noise`` scales it, 0: none; with
scale 1 and one beam each token is a draw from the model's distribution, the Gumbel-max trick).
Of the final candidates, the one with the best smoothed sentence BLEU against the reference
(sacreBLEU on the detokenized texts, :func:`seq2seq.training.mrt.sentence_cost`) is the oracle;
ties go to the higher search score. The decoder's input at step ``t`` is then the gold
``y_{t-1}`` where the scheduled coin says gold (:func:`seq2seq.model.decoder.gold_mask`, the
ratio and scope as configured) and the oracle's ``y*_{t-1}`` elsewhere: both sequences are known
before the forward, so the training forward is teacher-forced on the mixed ids in one call.

Zhang et al. decay the probability of the gold token per epoch, ``mu / (mu + exp(e / mu))``:
the schedules of :mod:`seq2seq.training.teacher_forcing` (``inverse_sigmoid``, ``unit: epoch``).
"""

import time
from typing import Dict, List

import torch
from torch import Tensor, nn

from seq2seq.data.batching import unpad
from seq2seq.data.tokenizer import BOS, EOS, PAD
from seq2seq.decoding.ensemble import Ensemble
from seq2seq.model.decoder import gold_mask

from .mrt import references, sentence_cost


def gumbel_like(x: Tensor) -> Tensor:
    """Standard Gumbel noise ``-log(-log u)``, ``u ~ U(0, 1)``, of ``x``'s shape (as
    ``-log E`` with ``E ~ Exp(1)``)."""
    return -torch.empty_like(x, dtype=torch.float).exponential_().clamp_(min=1e-30).log()


@torch.no_grad()
def length_constrained_beam(model: nn.Module, src: Tensor, src_len: Tensor, lengths: Tensor,
                            beam: int, noise: float = 0.0):
    """Beam search whose candidates have exactly ``lengths[b]`` tokens (the model as it is: put
    it in eval mode first for no dropout).

    Args:
        model: a :class:`seq2seq.model.seq2seq.Seq2Seq`.
        src ``(B, S)``, src_len ``(B,)``: the padded source batch.
        lengths ``(B,)``: each sentence's output length ``L_b`` (EOS not counted).
        beam: beams per sentence ``K``.
        noise: scale of the Gumbel noise added to each step's log-probabilities (0: none).

    Returns: ``tokens (B, K, T)`` (``T = max L``; PAD past ``L_b``) and ``scores (B, K)``, the
    summed (noisy) log-probabilities, best first; a beam that never had a finite score (fewer
    than ``K`` distinct outputs exist) scores ``-inf``.
    """
    models = Ensemble.of(model)
    B, K, T = src.size(0), beam, int(lengths.max()) if len(lengths) else 0
    state = models.start(src, src_len, repeat=K)
    dev = src.device
    scores = torch.full((B, K), float("-inf"), device=dev)  # (B, K)
    scores[:, 0] = 0.0  # one live beam per sentence at the start
    tokens = torch.full((B * K, 0), PAD, dtype=torch.long, device=dev)  # (B*K, t)
    y = torch.full((B * K,), BOS, dtype=torch.long, device=dev)  # (B*K,)
    base = (torch.arange(B, device=dev) * K).unsqueeze(1)  # (B, 1)
    same = torch.arange(K, device=dev).expand(B, K)  # (B, K): a finished sentence's beams stay
    for t in range(T):
        logits, state, _ = models.step(y, state)  # (B*K, V)
        logp = torch.log_softmax(logits.float(), -1)  # (B*K, V)
        if noise:
            logp = logp + noise * gumbel_like(logp)
        logp[:, [PAD, BOS, EOS]] = float("-inf")  # EOS only at the length, which ends the loop
        V = logp.size(-1)
        cand = (scores.view(B * K, 1) + logp).view(B, K * V)  # (B, K*V)
        top, idx = cand.topk(K, dim=1)  # (B, K)
        live = (t < lengths).unsqueeze(1)  # (B, 1): sentences still growing
        src_beam = torch.where(live, idx // V, same)  # (B, K)
        tok = torch.where(live, idx % V, PAD)  # (B, K)
        scores = torch.where(live, top, scores)  # (B, K)
        rows = (base + src_beam).view(-1)  # (B*K,)
        y = tok.view(-1)  # (B*K,)
        tokens = torch.cat([tokens[rows], y.unsqueeze(1)], dim=1)  # (B*K, t+1)
        state = state.reorder(rows)
    return tokens.view(B, K, T), scores


class SentenceOracle:
    """Zhang et al.'s sentence-level oracle as the fed tokens (see the module docstring).

    Args:
        cfg: the ``oracle`` section (:class:`seq2seq.config.OracleConfig`: ``beam``, ``noise``).
        tok: the tokenizer: candidates and references are detokenized to be scored.

    ``seconds`` and ``steps`` count the time spent in :meth:`search` and its calls since
    :meth:`window` last read them (the training log's cost of the oracle).
    """

    def __init__(self, cfg, tok) -> None:
        self.cfg, self.tok = cfg, tok
        self.cost = sentence_cost("bleu")
        self.seconds, self.steps = 0.0, 0

    def pick(self, cands: List[List[List[int]]], valid: List[List[bool]],
             refs: List[List[int]]) -> List[int]:
        """Per sentence, the index of its valid candidate with the best sentence BLEU (the
        lowest cost; ties: the first, the best search score). ``cands``: per sentence its
        ``K`` candidates (ids); ``valid``: which are real (a finite score)."""
        ref_text = self.tok.decode_tgt(refs)
        hyp_text = self.tok.decode_tgt([c for cs in cands for c in cs])
        K, best = len(cands[0]) if cands else 0, []
        for b, ref in enumerate(ref_text):
            costs = [self.cost(hyp_text[b * K + k], ref) if valid[b][k] else float("inf")
                     for k in range(K)]
            best.append(min(range(K), key=costs.__getitem__))
        return best

    def search(self, model: nn.Module, src: Tensor, src_len: Tensor, tgt_out: Tensor
               ) -> Tensor:
        """The oracle of each sentence, ``(B, T)`` in ``tgt_out``'s frame (its ids, then PAD
        where the reference has EOS and padding), searched in eval mode without gradient."""
        start, was_training = time.perf_counter(), model.training
        refs = references(tgt_out)
        lengths = torch.tensor([len(r) for r in refs], device=src.device)  # (B,)
        model.eval()
        try:
            tokens, scores = length_constrained_beam(model, src, src_len, lengths,
                                                     self.cfg.beam, self.cfg.noise)  # (B, K, L)
        finally:
            model.train(was_training)
        cands = [unpad(cs) for cs in tokens.tolist()]  # per sentence, K lists of ids
        best = self.pick(cands, torch.isfinite(scores).tolist(), refs)
        oracle = torch.full_like(tgt_out, PAD)  # (B, T)
        L = tokens.size(2)
        oracle[:, :L] = tokens[torch.arange(len(best), device=src.device),
                               torch.tensor(best, device=src.device)]  # (B, L)
        self.seconds += time.perf_counter() - start
        self.steps += 1
        return oracle

    def feed(self, model: nn.Module, src: Tensor, src_len: Tensor, tgt_in: Tensor,
             tgt_out: Tensor, tf_ratio: float, scope: str = "token") -> Tensor:
        """The decoder's input ``(B, T)``: ``tgt_in`` where :func:`gold_mask` says gold, the
        oracle shifted right (after BOS) elsewhere; at ``tf_ratio >= 1``, ``tgt_in`` itself
        (no search)."""
        if tf_ratio >= 1.0:
            return tgt_in
        oracle = self.search(model, src, src_len, tgt_out)  # (B, T)
        oracle_in = torch.cat([tgt_in[:, :1], oracle[:, :-1]], dim=1)  # (B, T): BOS, y*
        B, T = tgt_in.shape
        gold = gold_mask(B, T, tf_ratio, scope, tgt_in.device)  # (B, T)
        return torch.where(gold, tgt_in, oracle_in)

    def window(self, step_seconds: float) -> Dict[str, float]:
        """The oracle search's cost since the last call, for the training log: milliseconds
        per search (one per training step below ratio 1) and its share of ``step_seconds``
        (the steps' time); then starts counting again."""
        rec = {"oracle_ms_per_step": round(1000 * self.seconds / max(1, self.steps), 2),
               "oracle_share": round(self.seconds / max(1e-9, step_seconds), 4)}
        self.seconds, self.steps = 0.0, 0
        return rec


def oracle_cost(objective: nn.Module, step_seconds: float) -> Dict[str, float]:
    """The loop's record of the oracle search's cost (:meth:`SentenceOracle.window`) for an
    :class:`seq2seq.training.objective.Objective` (or DDP's wrapper of one); ``{}`` without an
    oracle."""
    oracle = getattr(getattr(objective, "module", objective), "oracle", None)
    return {} if oracle is None else oracle.window(step_seconds)


def oracle_note(rec: Dict[str, float]) -> str:
    """The log line's words for :func:`oracle_cost`'s record ("" without one)."""
    if "oracle_ms_per_step" not in rec:
        return ""
    return (f", oracle search {rec['oracle_ms_per_step']:.0f} ms/step, "
            f"{100 * rec['oracle_share']:.0f}% of the step")
