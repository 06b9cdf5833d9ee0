"""Exposure bias measured against an exact oracle: excess accumulated error (Arora et al., 2022).

Arora, El Asri, Bahuleyan and Cheung (2022), "Why exposure bias matters: an imitation
learning perspective of error accumulation in language generation". An oracle says, for any
source and any prefix, which next tokens still lead to the best reachable output; the loss
against it is ``-log`` of the probability the model gives the oracle's set. Two kinds:

- **aligned** (:data:`ORACLE_TASKS`: reverse, copy, sort and the reverses of the
  length-generalization and reverse_small tasks): the output's length and every position's
  token are fixed by the source, so the oracle at output position ``l`` is the reference token
  there, whatever the prefix; the free-running pass feeds the model's argmax for the
  reference's length, and positions ``l`` are the reference's.
- **minimal edit** (:data:`EDIT_ORACLE_TASKS`: commands, commands_length, dates, number_words,
  digits2words): the best output is the reference, and after a prefix ``p`` the oracle's set is
  ``{r[j] : j in argmin_j D(p, r[:j])}`` (Levenshtein over pieces, ``r[len r]`` = EOS;
  :mod:`seq2seq.compare.edit_oracle`); after the gold prefix it is ``{r[l]}``. The
  free-running pass feeds the model's argmax until it says EOS or for the reference's length
  (EOS included) plus :data:`FREE_MARGIN` tokens, whichever comes first; its positions ``l``
  are the model's *own* output positions (EOS included), so an output longer or shorter than
  its reference counts at the positions it reaches (``n``; the gold side's ``n_gold``, the
  reference's). The oracle sets come from a Levenshtein row per sentence advanced by each own
  token.

Per position ``l`` of a scored set:

    loss_gold(l)   -log p(oracle set at l | gold prefix)           (teacher forcing)
    loss_free(l)   -log p(oracle set at l | the model's own greedy prefix)
    AccErr_x(<=l)  sum over l' <= l of the mean loss_x(l') over the outputs that reach l'
    ExAccErr(<=l)  AccErr_free(<=l) - AccErr_gold(<=l): the error the model's own prefixes add
    %ExAccErr(<=l) 100 * ExAccErr(<=l) / AccErr_free(<=l)

with a bootstrap band over sentences, and the greedy error rate at ``l`` (the greedy token
outside the oracle's set) when the prefix holds no error yet ("clean") and after the first
error ("after"). Over seeds (:func:`csv_rows`, rows with ``seed`` ``mean``): the seeds' mean
curve, its band from a hierarchical bootstrap (seeds, then sentences within each). Elsewhere
(translation) no oracle is claimed: the same free-running quantity scores the *reference*
token after the model's own prefix, a divergence from the reference path, and is not
reported here.
"""

from pathlib import Path
from typing import Dict, List, Optional, Sequence

#: toy tasks whose oracle at output position l is the reference token at l
ORACLE_TASKS = ("reverse", "copy", "sort", "length_generalization", "reverse_small")
#: toy tasks whose oracle is the minimal edit from the prefix (:mod:`.edit_oracle`)
EDIT_ORACLE_TASKS = ("commands", "commands_length", "dates", "number_words", "digits2words")
#: edit-oracle tasks: the free-running pass stops at EOS or this many tokens past the reference
FREE_MARGIN = 10
#: bootstrap resamples of the sentences for the ExAccErr bands
RESAMPLES = 200


def oracle_task(data_path: Optional[str], config_path: str, toy: Optional[str]) -> Optional[str]:
    """The comparison's toy task when it has an exact oracle (aligned, :data:`ORACLE_TASKS`, or
    the minimal edit, :data:`EDIT_ORACLE_TASKS`), else None (a config with ``data.path`` reads
    real data: no oracle)."""
    if data_path is not None:
        return None
    task = toy or Path(config_path).stem
    return task if task in ORACLE_TASKS + EDIT_ORACLE_TASKS else None


def greedy_pick(logits):
    """The tokens a free run picks from ``logits (..., V)``: the argmax without padding, as
    greedy search and the model's own feed pick them."""
    import torch

    from seq2seq.data.tokenizer import PAD

    pad = torch.tensor([PAD], device=logits.device)
    return logits.index_fill(-1, pad, float("-inf")).argmax(-1)


def oracle_losses(model, data, batch_size: int, device, edit: bool = False
                  ) -> Dict[str, "Tensor"]:
    """Per sentence of ``data`` (``IdPairs``) and output position (EOS included), ``(N, T)``
    each: ``loss_gold`` and ``loss_free``, ``-log p`` of the oracle (reference) token after the
    gold prefix and after the model's own greedy prefix (fed its argmax, run for the
    reference's length); ``wrong_free``, the greedy token is not the oracle's; ``mask``, the
    position is inside the reference. Rows in the order of ``data``.

    ``edit``: the minimal-edit oracle (the module's docstring): ``loss_free`` and
    ``wrong_free`` against the oracle's set after each own prefix, over the model's own output
    (to its EOS, or the reference's length plus :data:`FREE_MARGIN`), ``mask_free`` its
    positions; ``T`` is the longest reference (EOS included) plus :data:`FREE_MARGIN`."""
    import torch

    from seq2seq.data.batching import bucket_batches, iterate
    from seq2seq.data.tokenizer import PAD

    N, T = len(data.tgt), max(len(t) for t in data.tgt) + 1 + (FREE_MARGIN if edit else 0)
    out = {k: torch.zeros(N, T) for k in ("loss_gold", "loss_free")}
    out["wrong_free"] = torch.zeros(N, T, dtype=torch.bool)
    out["mask"] = torch.zeros(N, T, dtype=torch.bool)
    if edit:
        out["mask_free"] = torch.zeros(N, T, dtype=torch.bool)
    model.eval()
    lens = [len(s) for s in data.src]
    with torch.no_grad():
        for batch in iterate(data, bucket_batches(lens, [len(t) for t in data.tgt], batch_size)):
            batch = batch.to(device)
            rows, gold = batch.index.cpu(), batch.tgt_out  # (B,), (B, T_b)
            mask = gold != PAD  # (B, T_b)
            L = mask.size(1)
            out["mask"][rows, :L] = mask.cpu()
            for ratio, key in ((1.0, "gold"), (0.0, "free")):
                if key == "free" and edit:
                    for k, v in free_edit(model, batch, gold, mask.sum(1) - 1).items():
                        out[k][rows, :v.size(1)] = v.cpu()
                    continue
                logits = model(batch.src, batch.src_len, batch.tgt_in, ratio)  # (B, T_b, V)
                logp = torch.log_softmax(logits.float(), -1)
                nll = -logp.gather(-1, gold.unsqueeze(-1)).squeeze(-1)  # (B, T_b)
                out[f"loss_{key}"][rows, :L] = (nll * mask).cpu()
                if key == "free":
                    own = greedy_pick(logits)  # (B, T_b) what the model fed itself
                    out["wrong_free"][rows, :L] = ((own != gold) & mask).cpu()
    return out


def free_edit(model, batch, gold, n) -> Dict[str, "Tensor"]:
    """The free-running pass of one batch against the minimal-edit oracle: ``gold (B, T_b)``
    (each reference, EOS, padding), ``n (B,)`` the tokens before EOS. The model is fed its own
    argmax (``ratio`` 0) for ``n + 1 + FREE_MARGIN`` steps at most; an output ends at its first
    EOS. Returns ``loss_free``, ``wrong_free``, ``mask_free``, each ``(B, W)``."""
    import torch

    from seq2seq.data.tokenizer import EOS, PAD

    from . import edit_oracle

    B = gold.size(0)
    cap = n + 1 + FREE_MARGIN  # (B,) own positions at most
    W = int(cap.max())
    tgt_in = batch.tgt_in.new_full((B, W), PAD)  # (B, W): only BOS is read at ratio 0
    tgt_in[:, 0] = batch.tgt_in[:, 0]
    logits = model(batch.src, batch.src_len, tgt_in, 0.0)  # (B, W, V): after each own prefix
    own = greedy_pick(logits)  # (B, W): the greedy tokens, as the model fed them
    row = edit_oracle.start(gold, n)  # (B, T_b)
    alive = torch.ones(B, dtype=torch.bool, device=gold.device)  # (B,) still in its output
    losses, wrongs, masks = [], [], []
    for l in range(W):
        alive = alive & (l < cap)
        sets = edit_oracle.oracle_sets(row, gold, logits.size(-1))  # (B, V)
        nll = edit_oracle.set_nll(logits[:, l], sets)  # (B,)
        losses.append(torch.where(alive, nll, torch.zeros_like(nll)))
        wrongs.append(~sets.gather(1, own[:, l:l + 1]).squeeze(1) & alive)
        masks.append(alive)
        row = edit_oracle.advance(row, gold, n, own[:, l])
        alive = alive & (own[:, l] != EOS)
    return {"loss_free": torch.stack(losses, 1), "wrong_free": torch.stack(wrongs, 1),
            "mask_free": torch.stack(masks, 1)}


def accumulation(loss_gold, loss_free, mask, wrong_free=None, resamples: int = RESAMPLES,
                 seed: int = 0, mask_free=None, draws: bool = False) -> Dict[str, list]:
    """The curves of the module's docstring from per-sentence losses ``(N, T)`` (``mask``:
    the positions inside each output), one value per position ``l = 1..T``: ``n``,
    ``loss_gold``, ``loss_free``, ``accerr_gold``, ``accerr_free``, ``exaccerr``,
    ``exaccerr_pct``, ``exaccerr_lo``/``exaccerr_hi`` (95% percentile band over
    ``resamples`` bootstrap resamples of the sentences; 0: none) and, with ``wrong_free``
    ``(N, T)``, ``err_clean``/``n_clean`` and ``err_after``/``n_after`` (the greedy error
    rate at ``l`` with no error before ``l`` / after the first error; NaN where no output is
    in that case). Positions no output reaches keep their cumulative sums.

    ``mask_free`` (the edit oracle): the free-running side's own positions, where they differ
    from the reference's ``mask``; then ``n`` counts the own outputs reaching ``l`` and
    ``n_gold`` the references. ``draws``: also ``draws``, the ``resamples`` bootstrap curves of
    ExAccErr (``R`` lists of ``T``, 4 decimals), for the band over seeds (:func:`seed_mean`)."""
    import torch

    m = mask.float()  # (N, T)
    n = m.sum(0)  # (T,)
    per = lambda x: (x * m).sum(0) / n.clamp(min=1)  # (T,) mean over the outputs reaching l
    mean_g = per(loss_gold.float())
    mf = m if mask_free is None else mask_free.float()  # (N, T)
    mean_f = (per(loss_free.float()) if mask_free is None else
              (loss_free.float() * mf).sum(0) / mf.sum(0).clamp(min=1))
    acc_g, acc_f = mean_g.cumsum(0), mean_f.cumsum(0)
    ex = acc_f - acc_g
    pct = torch.where(acc_f > 0, 100 * ex / acc_f.clamp(min=1e-12), torch.zeros_like(ex))
    out = {"n": mf.sum(0).long().tolist(), "loss_gold": mean_g.tolist(),
           "loss_free": mean_f.tolist(), "accerr_gold": acc_g.tolist(),
           "accerr_free": acc_f.tolist(), "exaccerr": ex.tolist(), "exaccerr_pct": pct.tolist()}
    if mask_free is not None:
        out["n_gold"] = n.long().tolist()
    if resamples:
        if mask_free is None:
            curves = resampled_curves(((loss_free - loss_gold).float() * m), m, resamples, seed)
        else:
            curves = resampled_curves(loss_free.float() * mf, mf, resamples, seed,
                                      loss_gold.float() * m, m)
        lo, hi = quantiles(curves)
        out["exaccerr_lo"], out["exaccerr_hi"] = lo.tolist(), hi.tolist()
        if draws:
            out["draws"] = [[round(v, 4) for v in c] for c in curves.tolist()]
    if wrong_free is not None:
        out.update(after_first_error(wrong_free, mask if mask_free is None else mask_free))
    return out


def resampled_curves(diff, m, resamples: int, seed: int = 0, gold=None, m_gold=None):
    """``(R, T)``: per resample of the ``N`` sentences with replacement, ``sum_{l' <= l}`` of
    the mean of ``diff (N, T)`` over the outputs reaching ``l'`` (``m (N, T)``, 0/1), less the
    same of ``gold`` over ``m_gold`` where given (the two sides' positions differ)."""
    import torch

    N = diff.size(0)
    g = torch.Generator().manual_seed(seed)
    draws = torch.randint(N, (resamples, N), generator=g)  # (R, N)
    w = torch.zeros(resamples, N).scatter_add_(1, draws, torch.ones(resamples, N))  # counts
    per = (w @ diff) / (w @ m).clamp(min=1)  # (R, T)
    if gold is not None:
        per = per - (w @ gold) / (w @ m_gold).clamp(min=1)
    return per.cumsum(1)  # (R, T)


def quantiles(curves):
    """The 2.5% and 97.5% percentiles of ``curves (R, T)`` per position: two ``(T,)``."""
    import torch

    q = torch.quantile(curves, torch.tensor([0.025, 0.975]), dim=0)  # (2, T)
    return q[0], q[1]


def bootstrap_band(diff, m, resamples: int, seed: int = 0):
    """The 2.5% and 97.5% percentiles, per position, of ``sum_{l' <= l}`` of the mean of
    ``diff (N, T)`` over the outputs reaching ``l'`` (``m (N, T)``, 0/1), over ``resamples``
    resamples of the ``N`` sentences with replacement: two ``(T,)`` tensors."""
    return quantiles(resampled_curves(diff, m, resamples, seed))


def after_first_error(wrong, mask) -> Dict[str, List[float]]:
    """Per position: the error rate of the outputs with no error before it (``err_clean``, of
    ``n_clean``) and of those with one (``err_after``, of ``n_after``); ``wrong``, ``mask``
    ``(N, T)`` bool."""
    import torch

    wrong = wrong & mask
    before = torch.cumsum(wrong.long(), 1) - wrong.long() > 0  # (N, T): an error before l
    clean, after = mask & ~before, mask & before
    rate = lambda sel: [float("nan") if k == 0 else e / k
                        for e, k in zip((wrong & sel).sum(0).tolist(), sel.sum(0).tolist())]
    return {"err_clean": rate(clean), "n_clean": clean.sum(0).tolist(),
            "err_after": rate(after), "n_after": after.sum(0).tolist()}


def measure(model, sets: Dict[str, object], batch_size: int, device,
            task: Optional[str] = None, draws: bool = False) -> Dict[str, dict]:
    """:func:`accumulation` on every scored set (name -> ``IdPairs``), and per set the totals
    per sentence: ``exaccerr_total`` (mean over sentences of the summed excess loss) and
    ``exaccerr_total_pct`` (of the summed free-running loss). ``task``: the toy task, whose
    kind picks the oracle (:data:`EDIT_ORACLE_TASKS`: the minimal edit; else aligned);
    ``draws``: keep the bootstrap curves, for the band over seeds."""
    out = {}
    for name, data in sets.items():
        if not len(data.tgt):
            continue
        x = oracle_losses(model, data, batch_size, device, edit=task in EDIT_ORACLE_TASKS)
        curves = accumulation(x["loss_gold"], x["loss_free"], x["mask"], x["wrong_free"],
                              mask_free=x.get("mask_free"), draws=draws)
        free, gold = x["loss_free"].sum(1), x["loss_gold"].sum(1)  # (N,)
        curves["exaccerr_total"] = float((free - gold).mean())
        curves["exaccerr_total_pct"] = (100 * curves["exaccerr_total"] / float(free.mean())
                                        if float(free.mean()) > 0 else 0.0)
        out[name] = curves
    return out


PER_POSITION = ("n", "n_gold", "loss_gold", "loss_free", "accerr_gold", "accerr_free",
                "exaccerr", "exaccerr_pct", "exaccerr_lo", "exaccerr_hi", "err_clean", "n_clean",
                "err_after", "n_after")
#: the per-position values that are cumulative sums (a shorter curve keeps its last value)
CUMULATIVE = ("accerr_gold", "accerr_free", "exaccerr")


def csv_rows(settings, results: Dict[str, List[dict]]) -> List[dict]:
    """One row per setting, seed, scored set and position (1-based, EOS included) of every run
    that measured it (``result["exaccerr"]``); then, where two seeds or more measured a set,
    its rows with ``seed`` ``mean`` (:func:`seed_mean`). Empty when no run measured."""
    rows = []
    for s in settings:
        by_set: Dict[str, List[dict]] = {}
        for r in results[s.label]:
            for name, c in (r.get("exaccerr") or {}).items():
                by_set.setdefault(name, []).append(c)
                for l in range(len(c["n"])):
                    rows.append({"setting": s.label, "seed": r.get("seed"), "set": name,
                                 "position": l + 1,
                                 **{k: c[k][l] for k in PER_POSITION if k in c}})
        for name, cs in by_set.items():
            if len(cs) > 1:
                c = seed_mean(cs)
                rows += [{"setting": s.label, "seed": "mean", "set": name, "position": l + 1,
                          **{k: c[k][l] for k in PER_POSITION if k in c}}
                         for l in range(len(c["n"]))]
    return rows


def seed_mean(curves: Sequence[dict], resamples: int = 1000, seed: int = 0) -> Dict[str, list]:
    """The seeds' curves (:func:`measure`'s entries for one set) in one: ``n`` (and ``n_gold``,
    ``n_clean``, ``n_after``) summed over seeds; the losses, AccErr and ExAccErr the seeds'
    mean (a curve that stops early keeps its cumulative sums, its losses 0 after);
    ``exaccerr_pct`` from the means; the error rates pooled (weighted by their counts);
    ``exaccerr_lo``/``exaccerr_hi`` the 95% band of a hierarchical bootstrap: each of
    ``resamples`` draws the seeds with replacement, then for each drawn seed one of its
    sentence-resampled curves (``draws``; a run measured without them offers its own curve
    only, so its sentences' variance is missing), and averages them."""
    import torch

    T = max(len(c["n"]) for c in curves)
    pad = lambda xs, fill: list(xs) + [fill if fill is not None else xs[-1]] * (T - len(xs))
    out: Dict[str, list] = {}
    for k in ("n", "n_gold", "n_clean", "n_after"):
        if all(k in c for c in curves):
            out[k] = [sum(v) for v in zip(*(pad(c[k], 0) for c in curves))]
    for k in ("loss_gold", "loss_free", *CUMULATIVE):
        fill = None if k in CUMULATIVE else 0.0
        out[k] = [sum(v) / len(curves) for v in zip(*(pad(c[k], fill) for c in curves))]
    out["exaccerr_pct"] = [100 * e / a if a > 0 else 0.0
                           for e, a in zip(out["exaccerr"], out["accerr_free"])]
    for k in ("err_clean", "err_after"):
        n_k = "n_" + k[4:]
        if all(k in c for c in curves):
            hits = [sum(e * n for e, n in zip(v, ns) if n) for v, ns in zip(
                zip(*(pad(c[k], 0.0) for c in curves)), zip(*(pad(c[n_k], 0) for c in curves)))]
            out[k] = [h / n if n else float("nan") for h, n in zip(hits, out[n_k])]
    pools = [torch.tensor([pad(d, None) for d in c.get("draws") or [c["exaccerr"]]])
             for c in curves]  # (R_s, T) per seed
    S, sizes = len(pools), torch.tensor([len(p) for p in pools])
    pool = torch.zeros(S, int(sizes.max()), T)  # (S, R, T)
    for j, p in enumerate(pools):
        pool[j, :len(p)] = p
    g = torch.Generator().manual_seed(seed)
    picked = torch.randint(S, (resamples, S), generator=g)  # (B, S): the seeds drawn
    within = (torch.rand(resamples, S, generator=g) * sizes[picked]).long()  # (B, S)
    lo, hi = quantiles(pool[picked, within].mean(1))  # (B, S, T) -> (B, T)
    out["exaccerr_lo"], out["exaccerr_hi"] = lo.tolist(), hi.tolist()
    return out


def run_columns(r: dict) -> Dict[str, float]:
    """A run's totals per scored set, for runs.csv: ``exaccerr_total_SET``,
    ``exaccerr_total_pct_SET``."""
    return {f"{k}_{name}": c[k] for name, c in (r.get("exaccerr") or {}).items()
            for k in ("exaccerr_total", "exaccerr_total_pct")}
