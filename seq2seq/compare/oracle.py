"""Exposure bias measured against an exact oracle: excess accumulated error (Arora et al., 2022).

Arora, El Asri, Bahuleyan and Cheung (2022), "Why exposure bias matters: an imitation
learning perspective of error accumulation in language generation". An oracle says, for any
source and any prefix, which next tokens still lead to the best reachable output. On the
position-aligned toy tasks (:data:`ORACLE_TASKS`: reverse, copy, sort and the reverses of the
length-generalization and reverse_small tasks) the output's length and every position's
token are fixed by the source, so the oracle at output position ``l`` is the reference token there, whatever the
prefix. Per position ``l`` of a scored set:

    loss_gold(l)   -log p(oracle_l | gold prefix)             (teacher forcing)
    loss_free(l)   -log p(oracle_l | the model's own greedy prefix)
    AccErr_x(<=l)  sum over l' <= l of the mean loss_x(l') over the outputs that reach l'
    ExAccErr(<=l)  AccErr_free(<=l) - AccErr_gold(<=l): the error the model's own prefixes add
    %ExAccErr(<=l) 100 * ExAccErr(<=l) / AccErr_free(<=l)

with a bootstrap band over sentences, and the greedy error rate at ``l`` when the prefix holds
no error yet ("clean") and after the first error ("after"). Elsewhere (translation, the
commands, dates and number tasks) no oracle is claimed (commands_length neither: an output is
not aligned with its source's positions): the same free-running quantity scores
the *reference* token after the model's own prefix, a divergence from the reference path, and
is not reported here.
"""

from pathlib import Path
from typing import Dict, List, Optional, Sequence

#: toy tasks whose oracle at output position l is the reference token at l
ORACLE_TASKS = ("reverse", "copy", "sort", "length_generalization", "reverse_small")
#: bootstrap resamples of the sentences for the ExAccErr bands
RESAMPLES = 200


def oracle_task(data_path: Optional[str], config_path: str, toy: Optional[str]) -> Optional[str]:
    """The comparison's toy task when it has an exact oracle (:data:`ORACLE_TASKS`), else None
    (a config with ``data.path`` reads real data: no oracle)."""
    if data_path is not None:
        return None
    task = toy or Path(config_path).stem
    return task if task in ORACLE_TASKS else None


def oracle_losses(model, data, batch_size: int, device) -> Dict[str, "Tensor"]:
    """Per sentence of ``data`` (``IdPairs``) and output position (EOS included), ``(N, T)``
    each: ``loss_gold`` and ``loss_free``, ``-log p`` of the oracle (reference) token after the
    gold prefix and after the model's own greedy prefix (fed its argmax, run for the
    reference's length); ``wrong_free``, the greedy token is not the oracle's; ``mask``, the
    position is inside the reference. Rows in the order of ``data``."""
    import torch

    from seq2seq.data.batching import bucket_batches, iterate
    from seq2seq.data.tokenizer import PAD

    N, T = len(data.tgt), max(len(t) for t in data.tgt) + 1
    out = {k: torch.zeros(N, T) for k in ("loss_gold", "loss_free")}
    out["wrong_free"] = torch.zeros(N, T, dtype=torch.bool)
    out["mask"] = torch.zeros(N, T, dtype=torch.bool)
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
                logits = model(batch.src, batch.src_len, batch.tgt_in, ratio)  # (B, T_b, V)
                logp = torch.log_softmax(logits.float(), -1)
                nll = -logp.gather(-1, gold.unsqueeze(-1)).squeeze(-1)  # (B, T_b)
                out[f"loss_{key}"][rows, :L] = (nll * mask).cpu()
                if key == "free":
                    out["wrong_free"][rows, :L] = ((logits.argmax(-1) != gold) & mask).cpu()
    return out


def accumulation(loss_gold, loss_free, mask, wrong_free=None, resamples: int = RESAMPLES,
                 seed: int = 0) -> Dict[str, List[float]]:
    """The curves of the module's docstring from per-sentence losses ``(N, T)`` (``mask``:
    the positions inside each output), one value per position ``l = 1..T``: ``n``,
    ``loss_gold``, ``loss_free``, ``accerr_gold``, ``accerr_free``, ``exaccerr``,
    ``exaccerr_pct``, ``exaccerr_lo``/``exaccerr_hi`` (95% percentile band over
    ``resamples`` bootstrap resamples of the sentences; 0: none) and, with ``wrong_free``
    ``(N, T)``, ``err_clean``/``n_clean`` and ``err_after``/``n_after`` (the greedy error
    rate at ``l`` with no error before ``l`` / after the first error; NaN where no output is
    in that case). Positions no output reaches keep their cumulative sums."""
    import torch

    m = mask.float()  # (N, T)
    n = m.sum(0)  # (T,)
    per = lambda x: (x * m).sum(0) / n.clamp(min=1)  # (T,) mean over the outputs reaching l
    mean_g, mean_f = per(loss_gold.float()), per(loss_free.float())
    acc_g, acc_f = mean_g.cumsum(0), mean_f.cumsum(0)
    ex = acc_f - acc_g
    pct = torch.where(acc_f > 0, 100 * ex / acc_f.clamp(min=1e-12), torch.zeros_like(ex))
    out = {"n": n.long().tolist(), "loss_gold": mean_g.tolist(), "loss_free": mean_f.tolist(),
           "accerr_gold": acc_g.tolist(), "accerr_free": acc_f.tolist(),
           "exaccerr": ex.tolist(), "exaccerr_pct": pct.tolist()}
    if resamples:
        lo, hi = bootstrap_band(((loss_free - loss_gold).float() * m), m, resamples, seed)
        out["exaccerr_lo"], out["exaccerr_hi"] = lo.tolist(), hi.tolist()
    if wrong_free is not None:
        out.update(after_first_error(wrong_free, mask))
    return out


def bootstrap_band(diff, m, resamples: int, seed: int = 0):
    """The 2.5% and 97.5% percentiles, per position, of ``sum_{l' <= l}`` of the mean of
    ``diff (N, T)`` over the outputs reaching ``l'`` (``m (N, T)``, 0/1), over ``resamples``
    resamples of the ``N`` sentences with replacement: two ``(T,)`` tensors."""
    import torch

    N = diff.size(0)
    g = torch.Generator().manual_seed(seed)
    draws = torch.randint(N, (resamples, N), generator=g)  # (R, N)
    w = torch.zeros(resamples, N).scatter_add_(1, draws, torch.ones(resamples, N))  # counts
    curves = ((w @ diff) / (w @ m).clamp(min=1)).cumsum(1)  # (R, T)
    q = torch.quantile(curves, torch.tensor([0.025, 0.975]), dim=0)  # (2, T)
    return q[0], q[1]


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


def measure(model, sets: Dict[str, object], batch_size: int, device) -> Dict[str, dict]:
    """:func:`accumulation` on every scored set (name -> ``IdPairs``), and per set the totals
    per sentence: ``exaccerr_total`` (mean over sentences of the summed excess loss) and
    ``exaccerr_total_pct`` (of the summed free-running loss)."""
    out = {}
    for name, data in sets.items():
        if not len(data.tgt):
            continue
        x = oracle_losses(model, data, batch_size, device)
        curves = accumulation(x["loss_gold"], x["loss_free"], x["mask"], x["wrong_free"])
        free, gold = x["loss_free"].sum(1), x["loss_gold"].sum(1)  # (N,)
        curves["exaccerr_total"] = float((free - gold).mean())
        curves["exaccerr_total_pct"] = (100 * curves["exaccerr_total"] / float(free.mean())
                                        if float(free.mean()) > 0 else 0.0)
        out[name] = curves
    return out


PER_POSITION = ("n", "loss_gold", "loss_free", "accerr_gold", "accerr_free", "exaccerr",
                "exaccerr_pct", "exaccerr_lo", "exaccerr_hi", "err_clean", "n_clean",
                "err_after", "n_after")


def csv_rows(settings, results: Dict[str, List[dict]]) -> List[dict]:
    """One row per setting, seed, scored set and position (1-based, EOS included) of every run
    that measured it (``result["exaccerr"]``); empty when no run did."""
    rows = []
    for s in settings:
        for r in results[s.label]:
            for name, c in (r.get("exaccerr") or {}).items():
                for l in range(len(c["n"])):
                    rows.append({"setting": s.label, "seed": r.get("seed"), "set": name,
                                 "position": l + 1,
                                 **{k: c[k][l] for k in PER_POSITION if k in c}})
    return rows


def run_columns(r: dict) -> Dict[str, float]:
    """A run's totals per scored set, for runs.csv: ``exaccerr_total_SET``,
    ``exaccerr_total_pct_SET``."""
    return {f"{k}_{name}": c[k] for name, c in (r.get("exaccerr") or {}).items()
            for k in ("exaccerr_total", "exaccerr_total_pct")}


def plot(setting: str, rows: Sequence[dict], path: Path, title: str) -> None:
    """One arm: ExAccErr(<=l) per scored set and seed with its bootstrap band (top), the
    greedy error rate at l before (dashed) and after (solid) the first error (bottom).
    Positions that fewer than 5% of the outputs (or 10) reach are left out."""
    from seq2seq.training.plots import pyplot, save

    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 7), sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    curves = {}
    for r in rows:
        curves.setdefault((r["set"], r["seed"]), []).append(r)
    for n, ((name, seed), rs) in enumerate(sorted(curves.items(), key=lambda kv: str(kv[0]))):
        floor = max(10, 0.05 * max(r["n"] for r in rs))
        rs = [r for r in rs if r["n"] >= floor]
        if not rs:
            continue
        color, pos = colors[n % len(colors)], [r["position"] for r in rs]
        top.plot(pos, [r["exaccerr"] for r in rs], color=color, label=f"{name} seed {seed}")
        if "exaccerr_lo" in rs[0]:
            top.fill_between(pos, [r["exaccerr_lo"] for r in rs],
                             [r["exaccerr_hi"] for r in rs], color=color, alpha=0.2, lw=0)
        bottom.plot(pos, [r["err_after"] for r in rs], color=color)
        bottom.plot(pos, [r["err_clean"] for r in rs], color=color, ls="--", alpha=0.7)
    top.axhline(0, color="grey", lw=0.8)
    top.set_ylabel("ExAccErr(<=l), nats (band: 95% bootstrap)")
    bottom.set_ylabel("greedy error rate at l\n(solid: after 1st error, dashed: before)")
    bottom.set_xlabel("output position l (pieces, EOS included)")
    top.legend(fontsize=7)
    top.set_title(f"{setting}: excess accumulated error against the exact oracle\n{title}",
                  fontsize=9)
    save(plt, fig, path)
