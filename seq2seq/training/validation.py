"""The training loop's validation: teacher-forced loss and perplexity, greedy BLEU, chrF and
exact match, outputs cut short by the output limit, and what "better" means for the records.

    rec = validate(model, corpus.valid, tok, cfg, device, limit)   # {"valid_loss", ...}
    best = max(records, key=score_key)

Validation draws its random numbers (the decoder's teacher-forcing coins when it runs free)
from a fork of the generators (:func:`own_random_stream`): training draws after it what it
would have drawn without it, so a run stopped after an extra validation resumes exactly.
"""

import contextlib
import math
import random
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch

from seq2seq.data.batching import IdPairs, bucket_batches, collate, iterate
from seq2seq.data.lengths import OutputLimit, count_truncated, resolve, truncation_warning
from seq2seq.decoding.evaluate import score
from seq2seq.decoding.search import greedy

from .mrt import mean_risk
from .objective import Objective


def validate(model, data, tok, cfg, device, limit: Optional[OutputLimit] = None,
             free_running: bool = False, examples: int = 0) -> Dict[str, Any]:
    """The training loop's validation on ``data`` (:class:`seq2seq.data.batching.IdPairs`).

    Teacher-forced loss and perplexity; greedy BLEU, chrF and exact match on the first
    ``train.valid_max_sentences``, with the output limit of ``cfg.decode`` where set, else
    ``limit`` (the one learned from the training data), and the number of those outputs that
    stopped at it instead of at EOS (``valid_truncated``; ``valid_warning`` when more than 1%);
    with ``free_running``, also the loss when the decoder is fed its own argmax predictions
    (``tf_ratio=0``): the gap between the two is exposure bias. With ``train.objective: mrt``,
    the mean expected cost of those sentences (``valid_mrt_risk``, :func:`mrt.mean_risk`).
    ``examples``: also the first that many translations, under ``"examples"`` (dicts of source,
    output, reference; for TensorBoard, not for metrics.jsonl). Random numbers come from
    :func:`own_random_stream`.
    """
    with own_random_stream(device):
        return _validate(model, data, tok, cfg, device, limit, free_running, examples)


@contextlib.contextmanager
def own_random_stream(device) -> Iterator[None]:
    """Run the block on copies of the random generators (torch's CPU one, ``device``'s where it
    is a GPU, Python's): their states are put back afterwards, so what the block draws leaves
    the stream the training loop draws from (and saves in its checkpoints) untouched."""
    device = torch.device(device)
    python = random.getstate()
    gpu = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=gpu):
            yield
    finally:
        random.setstate(python)


def _validate(model, data, tok, cfg, device, limit: Optional[OutputLimit], free_running: bool,
              examples: int) -> Dict[str, Any]:
    was_training = model.training
    model.eval()
    loss_tf = loss_free = 0.0
    n_tok = 0
    objective = Objective(model)
    with torch.no_grad():
        batches = bucket_batches([len(s) for s in data.src], [len(s) for s in data.tgt],
                                 cfg.decode.batch_size)
        for batch in iterate(data, batches):
            batch = batch.to(device)
            # the losses without (B, T, V) logits: the output projection in blocks
            losses = objective(batch.src, batch.src_len, batch.tgt_in, batch.tgt_out, 1.0)
            loss_tf += losses.nll
            n_tok += losses.n
            if free_running:
                loss_free += objective(batch.src, batch.src_len, batch.tgt_in, batch.tgt_out,
                                       0.0).nll
        sub = IdPairs(*(x[:cfg.train.valid_max_sentences] for x in data))
        limit = resolve(cfg.decode, limit)
        ids = greedy_ids(model, sub.src, limit, cfg.decode.batch_size, device)
        risk = (mean_risk(model, sub, tok, cfg, limit, device)
                if cfg.train.objective == "mrt" else None)
    hyps = tok.decode_tgt(ids)
    s = score(hyps, sub.tgt_text)
    model.train(was_training)
    cut_short = count_truncated([len(x) for x in sub.src], [len(h) for h in ids], limit)
    out = {"valid_loss": loss_tf / max(1, n_tok),
           "valid_ppl": math.exp(min(50.0, loss_tf / max(1, n_tok))),
           "valid_bleu": s["bleu"], "valid_chrf": s["chrf"], "valid_exact_match": s["exact_match"],
           "valid_truncated": cut_short}
    warning = truncation_warning(cut_short, len(ids), "validation", limit)
    if warning:
        out["valid_warning"] = warning
    if free_running:
        out["valid_loss_free"] = loss_free / max(1, n_tok)
    if risk is not None:
        out["valid_mrt_risk"] = risk
    if examples:
        out["examples"] = [{"source": s, "output": h, "reference": r} for s, h, r in
                           zip(sub.src_text[:examples], hyps, sub.tgt_text)]
    return out


def score_key(rec: Dict[str, Any]) -> List[float]:
    """What "better" means for validation records: BLEU, then chrF, then a lower loss (short
    toy outputs all score BLEU 0)."""
    return [rec["valid_bleu"], rec["valid_chrf"], -rec["valid_loss"]]


def greedy_ids(model, src: Sequence[Sequence[int]], limit: OutputLimit, batch_size: int,
               device) -> List[List[int]]:
    """Greedy output ids for every source (ids) in order, decoded in length-bucketed batches
    of ``batch_size`` with the output limit ``limit``."""
    lens = [len(s) for s in src]
    out: List[List[int]] = [[] for _ in lens]
    for b in bucket_batches(lens, lens, batch_size):
        batch = collate([src[i] for i in b], None, b).to(device)
        hyps = greedy(model, batch.src, batch.src_len, limit.a, limit.b).hyps
        for i, h in zip(b, hyps):
            out[i] = h
    return out
