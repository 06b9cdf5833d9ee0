"""Scores, and the one path from a model (or a checkpoint) and a split (or lines) to them.

    ev = evaluate_checkpoint("runs/x", split="test")      # seq2seq evaluate --checkpoint runs/x
    print(format_scores(ev.scores))                         # BLEU, chrF (signatures), exact match
    score(hyps, refs)                                       # seq2seq evaluate --hyp F --ref F

:func:`validate` is what the training loop measures on the validation split. ``torch`` is
imported where it is needed, so that scoring text files starts in a fraction of a second.
"""

import dataclasses
import math
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import sacrebleu

from seq2seq.data.lengths import OutputLimit, count_truncated, resolve, truncation_warning
from seq2seq.data.readers import Pairs, load_splits
from seq2seq.errors import ConfigError, UserError


def score(hyps: Sequence[str], refs: Sequence[str]) -> Dict[str, Any]:
    """Corpus BLEU, chrF and exact match (percent) of hypotheses against one reference each,
    with the sacreBLEU signatures."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
    b = bleu.corpus_score(list(hyps), [list(refs)])
    c = chrf.corpus_score(list(hyps), [list(refs)])
    exact = 100.0 * sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / max(1, len(refs))
    return {
        "bleu": round(b.score, 2), "chrf": round(c.score, 2), "exact_match": round(exact, 2),
        "signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature()),
        "bleu_detail": str(b), "n": len(refs),
    }


def format_scores(s: Dict[str, Any]) -> str:
    """Scores for people: BLEU, chrF, exact match, the signatures (and a truncation warning)."""
    return (f"BLEU {s['bleu']:.2f}  chrF {s['chrf']:.2f}  exact match {s['exact_match']:.2f}%"
            f"  ({s['n']} sentences)\n"
            f"  BLEU signature: {s['signature']}\n  chrF signature: {s['chrf_signature']}"
            + (f"\n{s['warning']}" if s.get("warning") else ""))


class Evaluation(NamedTuple):
    """A split decoded and scored."""

    split: str
    srcs: List[str]
    refs: List[str]
    hyps: List[str]
    scores: Dict[str, Any]  # see score()


def read_split(cfg, split: Optional[str] = None, dataset=None, errors: str = "strict"
               ) -> Pairs:
    """Source and reference lines of ``split`` (default: ``data.test_split``) of a config's data
    (or of ``dataset``, a ``datasets.DatasetDict``)."""
    split = split or cfg.data.test_split
    if not split:
        raise UserError("no split to evaluate: give --split or set data.test_split")
    return load_splits(cfg.data, [split], dataset, errors)[split]


def decode_options(cfg, overrides: Optional[Dict[str, Any]] = None, model=None):
    """The config's ``decode`` section with ``overrides`` (keys of it; None values ignored);
    with ``model``, also checks that the options fit it (``--bf16`` is for PyTorch models)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        opts = dataclasses.replace(cfg.decode, **overrides)
    except ConfigError as e:  # say it with the option's name
        raise UserError(str(e).replace("decode.", "--").replace("_", "-")) from None
    if opts.bf16 and getattr(model, "engine", "pytorch") != "pytorch":
        raise UserError("--bf16 is for PyTorch models; an exported model runs in float32, or "
                        "in int8 when exported with --int8")
    return opts


def evaluate_lines(model, tok, cfg, srcs: Sequence[str], refs: Sequence[str], name: str,
                   decode=None, device="cpu", progress: bool = False) -> Evaluation:
    """Translate ``srcs`` with ``model`` and score the output against ``refs``.
    ``decode``: overrides of ``cfg.decode`` (beam, length_penalty, batch_size, bf16, ...).
    The scores also count the outputs cut short by the output limit (``truncated``, with
    ``warning`` when they are more than 1%)."""
    from .search import translate

    opts = decode_options(cfg, {**(decode or {}), "n_best": 1}, model)
    r = translate(model, tok, list(srcs), opts, device=device, progress=progress, warn=False)
    s = score(r.hyps, refs)
    s.update(truncated=r.truncated, output_limit=r.limit.describe())
    warning = truncation_warning(r.truncated, r.decoded, name, r.limit)
    if warning:
        s["warning"] = warning
    return Evaluation(name, list(srcs), list(refs), r.hyps, s)


def evaluate_model(model, tok, cfg, split: Optional[str] = None, dataset=None, decode=None,
                   device="cpu", progress: bool = False, errors: str = "strict") -> Evaluation:
    """Decode ``split`` of the config's data (or ``dataset``) with ``model`` (or an
    :class:`seq2seq.decoding.ensemble.Ensemble`) and score it."""
    split = split or cfg.data.test_split
    srcs, refs = read_split(cfg, split, dataset, errors)
    return evaluate_lines(model, tok, cfg, srcs, refs, split, decode, device, progress)


def evaluate_checkpoint(checkpoint, split: Optional[str] = None, dataset=None, decode=None,
                        impl: Optional[str] = None, device="auto", progress: bool = False,
                        errors: str = "strict") -> Evaluation:
    """Load a checkpoint (a run folder: its best.pt), several (an ensemble; data and decode
    options of the first) or an exported model (a folder written by ``seq2seq export``), and
    :func:`evaluate_model` it."""
    from .ensemble import load_for_decoding

    model, tok, cfg, device = load_for_decoding(checkpoint, impl, device)
    return evaluate_model(model, tok, cfg, split, dataset, decode, device, progress, errors)


def validate(model, data, tok, cfg, device, limit: Optional[OutputLimit] = None,
             free_running: bool = False, examples: int = 0) -> Dict[str, Any]:
    """The training loop's validation on ``data`` (:class:`seq2seq.data.batching.IdPairs`).

    Teacher-forced loss and perplexity; greedy BLEU, chrF and exact match on the first
    ``train.valid_max_sentences``, with the output limit of ``cfg.decode`` where set, else
    ``limit`` (the one learned from the training data), and the number of those outputs that
    stopped at it instead of at EOS (``valid_truncated``; ``valid_warning`` when more than 1%);
    with ``free_running``, also the loss when the decoder is fed its own argmax predictions
    (``tf_ratio=0``): the gap between the two is exposure bias. ``examples``: also the first
    that many translations, under ``"examples"`` (dicts of source, output, reference; for
    TensorBoard, not for metrics.jsonl).
    """
    import torch

    from seq2seq.data.batching import IdPairs, bucket_batches, iterate

    was_training = model.training
    model.eval()
    loss_tf = loss_free = 0.0
    n_tok = 0
    with torch.no_grad():
        batches = bucket_batches([len(s) for s in data.src], [len(s) for s in data.tgt],
                                 cfg.decode.batch_size)
        for batch in iterate(data, batches):
            batch = batch.to(device)
            # the losses without (B, T, V) logits: the output projection in blocks
            losses = model(batch.src, batch.src_len, batch.tgt_in, 1.0, tgt_out=batch.tgt_out)
            loss_tf += losses.nll
            n_tok += losses.n
            if free_running:
                loss_free += model(batch.src, batch.src_len, batch.tgt_in, 0.0,
                                   tgt_out=batch.tgt_out).nll
        sub = IdPairs(*(x[:cfg.train.valid_max_sentences] for x in data))
        limit = resolve(cfg.decode, limit)
        ids = greedy_ids(model, sub.src, limit, cfg.decode.batch_size, device)
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
    from seq2seq.data.batching import bucket_batches, collate

    from .search import greedy

    lens = [len(s) for s in src]
    out: List[List[int]] = [[] for _ in lens]
    for b in bucket_batches(lens, lens, batch_size):
        batch = collate([src[i] for i in b], None, b).to(device)
        hyps = greedy(model, batch.src, batch.src_len, limit.a, limit.b).hyps
        for i, h in zip(b, hyps):
            out[i] = h
    return out
