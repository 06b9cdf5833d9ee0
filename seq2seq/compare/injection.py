"""Error injection: does a model recover from wrong tokens in its prefix (He et al., 2021)?

He, Zhang, Jiang, Bao and Ding (2021), "Exposure bias versus self-recovery: are distortions
really incremental for autoregressive text generation?". A gold prefix up to output position
``t``, then ``k`` wrong tokens forced at positions ``t .. t + k - 1`` (``how``: ``random``, a
uniformly random token other than the reference one, never padding or BOS; ``second``, the
model's own best token other than the reference one), then the model runs free (greedy).
``how="gold"`` (the reference tokens forced instead) is the clean run to compare with.
:func:`probe` injects at each position of ``ts`` (compare-tf: :data:`POSITIONS`).

Against which oracle the suffix (positions ``t + k`` on) is scored
(:mod:`seq2seq.compare.oracle`):

- aligned toy tasks: the model runs to the reference's length and the reference token at
  each position is the exact oracle; ``acc`` is the suffix's token accuracy against it,
  ``exact`` the share of outputs whose suffix is all right, ``loss`` ``-log p`` of the oracle
  token. On translation the same numbers score the reference suffix: a divergence from the
  reference path, not recovery.
- minimal-edit toy tasks (``edit``): the model runs until it says EOS, or for the reference's
  length plus :data:`seq2seq.compare.oracle.FREE_MARGIN`; the suffix's positions are its own.
  At each, the oracle's set comes from the Levenshtein row of everything fed so far (gold
  prefix, injected tokens, own tokens; :mod:`seq2seq.compare.edit_oracle`). ``acc``: the
  share of own suffix tokens inside the set; ``loss``: ``-log p`` of the set; ``exact``: the
  share of outputs whose every suffix token is inside the set and that end with EOS, which is
  exactly ``D(output, r) == min_j D(injected prefix, r[:j])``: the model recovered to the best
  output still reachable after the injection (a token inside the set keeps that minimum, one
  outside adds an edit).
"""

from typing import Dict, List, Optional, Sequence

HOWS = ("gold", "random", "second")
#: the injection positions compare-tf probes (0-based; outputs too short for t + k are left out)
POSITIONS = (2, 5, 10)


def inject(model, data, t: int, k: int, how: str, batch_size: int, device,
           seed: int = 0, edit: bool = False) -> Dict[str, float]:
    """Over the outputs of ``data`` (``IdPairs``) longer than ``t + k`` tokens (EOS included):
    ``t``; ``n``, the number of outputs; ``acc``, the suffix's token accuracy (percent) against the
    oracle from position ``t + k`` on; ``exact``, the percentage of outputs whose suffix is
    all right; ``loss``, the mean ``-log p`` of the oracle token per suffix position.
    ``edit``: against the minimal-edit oracle (the module's docstring)."""
    import torch

    from seq2seq.data.batching import bucket_batches, iterate
    from seq2seq.data.tokenizer import EOS, PAD
    from seq2seq.model.decoder import noise_ids

    from . import edit_oracle
    from .oracle import FREE_MARGIN, greedy_pick

    if how not in HOWS:
        raise ValueError(f"how must be one of {', '.join(HOWS)}, got {how!r}")
    keep = [i for i, y in enumerate(data.tgt) if len(y) + 1 > t + k]
    right = tokens = exact = 0
    loss = 0.0
    g = torch.Generator().manual_seed(seed)
    model.eval()
    no_pad = torch.tensor([PAD], device=device)  # never a second choice either
    with torch.no_grad():
        for batch in iterate(data, [[keep[i] for i in b] for b in bucket_batches(
                [len(data.src[i]) for i in keep], [len(data.tgt[i]) for i in keep],
                batch_size)]):
            batch = batch.to(device)
            gold, mask = batch.tgt_out, batch.tgt_out != PAD  # (B, T)
            B, T = gold.shape
            noise = noise_ids(model.decoder.out.out_features,
                              (PAD, int(batch.tgt_in[0, 0]))).to(device)  # sorted ids
            enc = model.encoder(batch.src, batch.src_len)
            state = model.decoder.start(enc)
            y = batch.tgt_in[:, 0]  # BOS
            ok = torch.ones(B, dtype=torch.bool, device=device)  # suffix all right so far
            if edit:
                n_ref = mask.sum(1) - 1  # (B,) tokens before EOS
                row = edit_oracle.start(gold, n_ref)  # (B, T): D(prefix, r[:j])
                cap = n_ref + 1 + FREE_MARGIN  # (B,)
                alive = torch.ones(B, dtype=torch.bool, device=device)  # still decoding
                ended = torch.zeros(B, dtype=torch.bool, device=device)  # said EOS
                T = int(cap.max())
            for l in range(T):
                logits, state, _ = model.decoder.step(y, state, enc)  # (B, V)
                if l < t or (how == "gold" and l < t + k):
                    y = gold[:, l]
                elif l < t + k:
                    y = (_second(logits.index_fill(-1, no_pad, float("-inf")), gold[:, l])
                         if how == "second" else
                         _random_other(noise, gold[:, l], g))
                else:
                    pred = greedy_pick(logits)  # (B,) as greedy search: never PAD
                    if edit:
                        m = alive & (l < cap)
                        sets = edit_oracle.oracle_sets(row, gold, logits.size(-1))  # (B, V)
                        hit = sets.gather(1, pred.unsqueeze(1)).squeeze(1) & m
                        nll = edit_oracle.set_nll(logits, sets)  # (B,)
                        nll = torch.where(m, nll, torch.zeros_like(nll))
                    else:
                        m = mask[:, l]
                        hit = (pred == gold[:, l]) & m
                        nll = -torch.log_softmax(logits.float(), -1).gather(
                            1, gold[:, l:l + 1]).squeeze(1)  # (B,)
                    right += int(hit.sum())
                    tokens += int(m.sum())
                    ok &= hit | ~m
                    loss += float((nll * m).sum())
                    y = pred
                    if edit:
                        ended |= m & (pred == EOS)
                        alive = m & (pred != EOS)
                        if not bool(alive.any()):
                            break
                if edit:
                    row = edit_oracle.advance(row, gold, n_ref, y)
            if edit:
                ok &= ended  # and said EOS inside the cap
            exact += int(ok.sum())
    n = len(keep)
    return {"t": t, "n": n, "acc": 100.0 * right / max(1, tokens),
            "exact": 100.0 * exact / max(1, n), "loss": loss / max(1, tokens)}


def _second(logits, gold):
    """The model's best token other than ``gold``: ``logits (B, V)``, ``gold (B,)``."""
    import torch

    top2 = logits.topk(2, -1).indices  # (B, 2)
    return torch.where(top2[:, 0] == gold, top2[:, 1], top2[:, 0])


def _random_other(noise, gold, g):
    """A token drawn uniformly from ``noise`` (sorted ids) less ``gold (B,)``, per row."""
    import torch

    n = len(noise)
    gold = gold.contiguous()
    pos = torch.searchsorted(noise, gold)  # where gold is (or would be) in noise
    present = noise[pos.clamp(max=n - 1)] == gold  # (B,)
    u = torch.rand(gold.shape, generator=g).to(gold.device)
    r = (u * (n - present.long())).long().clamp(max=n - 1)  # of n - 1 slots, or n
    return noise[r + (present & (r >= pos)).long()]  # gold's slot skipped


def probe(model, data, batch_size: int, device, ks=(1, 2, 4), ts=(2,),
          hows=("random", "second"), seed: int = 0, task: Optional[str] = None
          ) -> Dict[str, Dict[str, float]]:
    """:func:`inject` at each position of ``ts`` for each ``k`` and ``how``, and the clean run
    for each ``k`` (``gold``), against the oracle of ``task``'s kind (a task of
    :data:`seq2seq.compare.oracle.EDIT_ORACLE_TASKS`: the minimal edit; else aligned):
    ``{"HOW_K": result}`` with one position, ``{"HOW_K_tT": result}`` with several."""
    from .oracle import EDIT_ORACLE_TASKS

    out = {}
    for t in ts:
        for k in ks:
            for how in ("gold", *hows):
                key = f"{how}_{k}" if len(ts) == 1 else f"{how}_{k}_t{t}"
                out[key] = inject(model, data, t, k, how, batch_size, device, seed,
                                  edit=task in EDIT_ORACLE_TASKS)
    return out


#: what a translation probe scores against (``result["injection_against"]``; toy tasks: oracle)
REFERENCE = "reference suffix"


def csv_rows(settings, results, sentences: int = 0) -> list:
    """One row per setting, seed, scored set, position ``t``, ``how`` and ``k`` of every run
    that probed it (``result["injection"]``), the clean run (``how`` gold) beside each;
    ``against``: the exact oracle (toy tasks) or the :data:`REFERENCE` (translation), whose
    probes count only where they cover ``sentences`` pairs (compare-tf's
    ``--injection-sentences``; 0: none), so an earlier probe of another size is left out."""
    rows = []
    for s in settings:
        for r in results[s.label]:
            if (r.get("injection_against") == REFERENCE
                    and r.get("injection_sentences") != sentences):
                continue
            for name, res in (r.get("injection") or {}).items():
                for key, v in res.items():
                    how, k = key.split("_")[:2]
                    rows.append({"setting": s.label, "seed": r.get("seed"), "set": name,
                                 "against": r.get("injection_against", "oracle"),
                                 "how": how, "k": int(k), **v})
    return rows


def drops(rows: Sequence[dict], stat: str = "acc") -> Dict[tuple, List[float]]:
    """``{(set, setting, how, k): [per seed]}``: each seed's ``stat`` of the clean run (``how``
    gold) minus that after the injection, averaged over the positions ``t`` (the clean run's
    own value under ``how`` gold); positions probed on no output (``n`` 0) left out."""
    by = {}
    for r in rows:
        if int(r["n"]):
            by.setdefault((r["set"], r["setting"], r["seed"], r["k"], r["t"]), {})[r["how"]] = \
                float(r[stat])
    out: Dict[tuple, Dict[object, List[float]]] = {}
    for (name, arm, seed, k, _), v in by.items():
        for how, x in v.items():
            d = v["gold"] if how == "gold" else v["gold"] - x
            out.setdefault((name, arm, how, k), {}).setdefault(seed, []).append(d)
    return {key: [sum(xs) / len(xs) for xs in seeds.values()] for key, seeds in out.items()}


def markdown(rows: Sequence[dict]) -> str:
    """A table per scored set: every arm's clean suffix accuracy and its drop after k = 1, 2, 4
    forced tokens (random, the model's second choice), mean ± sd over seeds, averaged over
    the positions ``t``."""
    from .stats import mean_std_ci

    d = drops(rows)
    ks = sorted({key[3] for key in d})
    if not ks:
        return "(no output is long enough for any injection position)"
    hows = [h for h in HOWS[1:] if any(key[2] == h for key in d)]
    cell = lambda xs: ("" if not xs else f"{mean_std_ci(xs)[0]:+.1f}" if len(xs) == 1 else
                       "{:+.1f} ± {:.1f}".format(*mean_std_ci(xs)[:2]))
    against = {r["set"]: r["against"] for r in rows}
    parts = []
    for name in dict.fromkeys(r["set"] for r in rows):
        head = ["arm", f"clean suffix acc % (k={ks[0]})"] + [f"drop, {h} k={k}" for h in hows
                                                              for k in ks]
        lines = [f"{name} (against the {against[name]}):", "",
                 "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for arm in dict.fromkeys(r["setting"] for r in rows):
            clean = [x for k in ks[:1] for x in d.get((name, arm, "gold", k), [])]
            lines.append("| " + " | ".join([arm, cell(clean).lstrip("+")] + [
                cell(d.get((name, arm, h, k), [])) for h in hows for k in ks]) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def section(rows: Sequence[dict], sentences: int = 0) -> str:
    """results.md's error-injection section (empty without probes): :func:`markdown` and what
    its numbers are against (``sentences``: the pairs per set a translation probe covers)."""
    if not rows:
        return ""
    note = (f"On translation, on the first {sentences} pairs of each set, the suffix is scored "
            "against the reference suffix: the numbers measure the divergence from the "
            "reference path after the injection, not recovery (a right paraphrase counts as "
            "wrong)." if any(r["against"] == REFERENCE for r in rows) else
            "The suffix is scored against the task's exact oracle.")
    return f"""
## Error injection (He et al., 2021)

k wrong tokens forced into the gold prefix at positions {", ".join(map(str, POSITIONS))}, then
greedy: the clean run's suffix token accuracy (gold tokens forced instead) and its drop in points
after the injection (clean minus injected: positive, the injection hurts), mean ± sd over seeds,
averaged over the positions (injection.csv, injection.png). {note}

{markdown(rows)}
"""


def plot(rows: Sequence[dict], path, title: str) -> None:
    """``injection.png``: a column per scored set; the drop in suffix accuracy (top) and the
    rise in suffix loss (bottom) against k, a color per arm (solid: random tokens, dashed: the
    model's second choice), mean over seeds with their range as a band."""
    from seq2seq.training.plots import pyplot, save

    plt = pyplot()
    sets = list(dict.fromkeys(r["set"] for r in rows))
    arms = list(dict.fromkeys(r["setting"] for r in rows))
    fig, axes = plt.subplots(2, len(sets), figsize=(5 * len(sets), 6.5), squeeze=False,
                             sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, (stat, sign) in enumerate((("acc", 1), ("loss", -1))):
        d = drops(rows, stat)
        for col, name in enumerate(sets):
            ax = axes[row][col]
            for a, arm in enumerate(arms):
                for how, ls in (("random", "-"), ("second", "--")):
                    ks = sorted(k for (s, m, h, k) in d if (s, m, h) == (name, arm, how))
                    if not ks:
                        continue
                    ys = [[sign * x for x in d[(name, arm, how, k)]] for k in ks]
                    ax.plot(ks, [sum(y) / len(y) for y in ys], ls=ls, marker="o", ms=3,
                            color=colors[a % len(colors)],
                            label=f"{arm} ({how})" if col == 0 and row == 0 else None)
                    ax.fill_between(ks, [min(y) for y in ys], [max(y) for y in ys],
                                    color=colors[a % len(colors)], alpha=0.12, lw=0)
            ax.axhline(0, color="grey", lw=0.8)
            if row == 0:
                ax.set_title(f"{name} (against the {rows[0]['against']})", fontsize=9)
            else:
                ax.set_xlabel("k, tokens forced wrong")
            ax.set_xticks(sorted({r["k"] for r in rows}))
    axes[0][0].set_ylabel("suffix accuracy drop, points\n(clean run minus injected)")
    axes[1][0].set_ylabel("suffix loss rise, nats per token")
    axes[0][0].legend(fontsize=7, handlelength=3.5)
    fig.suptitle(f"error injection (He et al., 2021), mean over seeds and t, band: seed range\n"
                 f"{title}", fontsize=9)
    save(plt, fig, path)
