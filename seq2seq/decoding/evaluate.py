"""Scores, and the one path from a model (or a checkpoint) and a split (or lines) to them.

    ev = evaluate_checkpoint("runs/x", split="test")      # seq2seq evaluate --checkpoint runs/x
    print(format_scores(ev.scores))                         # BLEU, chrF (signatures), exact match
    score(hyps, refs)                                       # seq2seq evaluate --hyp F --ref F

``torch`` is imported where it is needed, so that scoring text files starts in a fraction of a
second. The training loop's validation: :mod:`seq2seq.training.validation`.
"""

from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import sacrebleu

from seq2seq.data.lengths import truncation_warning
from seq2seq.data.readers import Pairs, load_splits, read_test_set
from seq2seq.errors import ConfigError, UserError

from .settings import decode_settings


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
        "length_ratio": round(b.sys_len / max(1, b.ref_len), 4),  # sacreBLEU's sys_len/ref_len
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
    per_token: Optional[List[Optional[float]]] = None  # with log_probs: log P / (pieces + EOS)


def read_split(cfg, split: Optional[str] = None, dataset=None, errors: str = "strict"
               ) -> Pairs:
    """Source and reference lines of ``split`` (default: ``data.test_split``) of a config's data
    (or of ``dataset``, a ``datasets.DatasetDict``)."""
    split = split or cfg.data.test_split
    if not split:
        raise UserError("no split to evaluate: give --split or set data.test_split")
    return load_splits(cfg.data, [split], dataset, errors)[split]


def read_test_sets(texts: Sequence[str]) -> List[Tuple[str, List[str], List[str]]]:
    """The ``--extra-test NAME=SRC,REF`` sets (``texts``), read (one line for a bad file or
    value; UTF-8, strictly, as compare-tf reads them), as (name, sources, references); a name
    given twice is refused."""
    sets = [read_test_set(text) for text in texts]
    names = [name for name, _, _ in sets]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice:
        raise UserError(f"--extra-test {twice}=...: given twice; give each set its own name")
    return sets


def decode_config(cfg, overrides: Optional[Dict[str, Any]] = None, model=None):
    """The :class:`seq2seq.config.DecodeConfig` to decode with: the config's ``decode`` section
    with ``overrides`` (keys of it; None values ignored; what they make meaningless dropped,
    :func:`seq2seq.decoding.settings.decode_settings`); with ``model``, also checks that the
    options fit it (``--bf16`` is for PyTorch models)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        opts = decode_settings(cfg.decode, **overrides)
    except ConfigError as e:  # say it with the option's name
        raise UserError(str(e).replace("decode.", "--").replace("_", "-")) from None
    if opts.bf16 and getattr(model, "engine", "pytorch") != "pytorch":
        raise UserError("--bf16 is for PyTorch models; an exported model runs in float32, or "
                        "in int8 when exported with --int8")
    return opts


def evaluate_lines(model, tok, cfg, srcs: Sequence[str], refs: Sequence[str], name: str,
                   decode=None, device="cpu", progress: bool = False,
                   log_probs: bool = False) -> Evaluation:
    """Translate ``srcs`` with ``model`` and score the output against ``refs``.
    ``decode``: overrides of ``cfg.decode`` (beam, length_penalty, batch_size, bf16, ...).
    The scores also count the outputs cut short by the output limit (``truncated``, with
    ``warning`` when they are more than 1%) and the empty outputs (``empty``). ``log_probs``:
    also each output's log-probability per piece, EOS included (``per_token``; None for a line
    not decoded)."""
    from .search import translate

    opts = decode_config(cfg, {**(decode or {}), "n_best": 1}, model)
    r = translate(model, tok, list(srcs), opts, device=device, progress=progress, warn=False,
                  log_probs=log_probs)
    s = score(r.hyps, refs)
    s.update(truncated=r.truncated, output_limit=r.limit.describe(),
             empty=sum(not h.strip() for h in r.hyps))
    warning = truncation_warning(r.truncated, r.decoded, name, r.limit)
    if warning:
        s["warning"] = warning
    per_token = None
    if log_probs:
        pieces = tok.encode_tgt(r.hyps)
        per_token = [None if lp is None else lp / (len(p) + 1)
                     for lp, p in zip(r.log_probs, pieces)]
    return Evaluation(name, list(srcs), list(refs), r.hyps, s, per_token)


def evaluate_model(model, tok, cfg, split: Optional[str] = None, dataset=None, decode=None,
                   device="cpu", progress: bool = False, errors: str = "strict",
                   log_probs: bool = False) -> Evaluation:
    """Decode ``split`` of the config's data (or ``dataset``) with ``model`` (or an
    :class:`seq2seq.decoding.ensemble.Ensemble`) and score it."""
    split = split or cfg.data.test_split
    srcs, refs = read_split(cfg, split, dataset, errors)
    return evaluate_lines(model, tok, cfg, srcs, refs, split, decode, device, progress,
                          log_probs)


def evaluate_sets(model, tok, cfg, sets: Sequence[Tuple[str, List[str], List[str]]],
                  decode=None, device="cpu", progress: bool = False) -> Dict[str, Dict]:
    """Each set of ``sets`` (name, sources, references: :func:`read_test_sets`) decoded as
    :func:`evaluate_lines` does, with its log-probabilities: per name its scores and its
    hallucination keys (:func:`seq2seq.decoding.hallucination.evaluation_report`)."""
    from .hallucination import evaluation_report

    out = {}
    for name, srcs, refs in sets:
        ev = evaluate_lines(model, tok, cfg, srcs, refs, name, decode, device, progress, True)
        out[name] = {**ev.scores, **evaluation_report(ev)}
    return out


def evaluate_checkpoint(checkpoint, split: Optional[str] = None, dataset=None, decode=None,
                        impl: Optional[str] = None, device="auto", progress: bool = False,
                        errors: str = "strict", log_probs: bool = False) -> Evaluation:
    """Load a checkpoint (a run folder: its best.pt), several (an ensemble; data and decode
    options of the first) or an exported model (a folder written by ``seq2seq export``), and
    :func:`evaluate_model` it."""
    from seq2seq.load import load_for_decoding

    model, tok, cfg, device = load_for_decoding(checkpoint, impl=impl, device=device)
    return evaluate_model(model, tok, cfg, split, dataset, decode, device, progress, errors,
                          log_probs)
