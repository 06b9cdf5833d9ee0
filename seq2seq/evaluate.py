"""Scores: sacreBLEU BLEU and chrF (with their signatures) and exact match."""

from typing import Dict, Sequence

import sacrebleu


def score(hyps: Sequence[str], refs: Sequence[str]) -> Dict[str, object]:
    """Corpus BLEU, chrF and exact match (percent) of hypotheses against one reference each."""
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


def format_scores(s: Dict[str, object]) -> str:
    return (f"BLEU {s['bleu']:.2f}  chrF {s['chrf']:.2f}  exact match {s['exact_match']:.2f}%"
            f"  ({s['n']} sentences)\n"
            f"  BLEU signature: {s['signature']}\n  chrF signature: {s['chrf_signature']}")
