"""Error injection: does a model recover from wrong tokens in its prefix (He et al., 2021)?

He, Zhang, Jiang, Bao and Ding (2021), "Exposure bias versus self-recovery: are distortions
really incremental for autoregressive text generation?". A gold prefix up to output position
``t``, then ``k`` wrong tokens forced at positions ``t .. t + k - 1`` (``how``: ``random``, a
uniformly random token other than the reference one, never padding or BOS; ``second``, the
model's own best token other than the reference one), then the model runs free (greedy) to
the reference's length. On the position-aligned toy tasks the reference token at each
position is the exact oracle (see :mod:`seq2seq.compare.oracle`), so the suffix's token
accuracy and loss against it say how far the model recovers; ``how="gold"`` (the reference
tokens forced instead) is the clean run to compare with. On translation the same numbers
score the reference suffix: a divergence from the reference path, not recovery.
"""

from typing import Dict

HOWS = ("gold", "random", "second")


def inject(model, data, t: int, k: int, how: str, batch_size: int, device,
           seed: int = 0) -> Dict[str, float]:
    """Over the outputs of ``data`` (``IdPairs``) longer than ``t + k`` tokens (EOS included):
    ``t``; ``n``, the number of outputs; ``acc``, the suffix's token accuracy (percent) against the
    oracle from position ``t + k`` on; ``exact``, the percentage of outputs whose suffix is
    all right; ``loss``, the mean ``-log p`` of the oracle token per suffix position."""
    import torch

    from seq2seq.data.batching import bucket_batches, iterate
    from seq2seq.data.tokenizer import PAD
    from seq2seq.model.decoder import noise_ids

    if how not in HOWS:
        raise ValueError(f"how must be one of {', '.join(HOWS)}, got {how!r}")
    keep = [i for i, y in enumerate(data.tgt) if len(y) + 1 > t + k]
    right = tokens = exact = 0
    loss = 0.0
    g = torch.Generator().manual_seed(seed)
    model.eval()
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
            for l in range(T):
                logits, state, _ = model.decoder.step(y, state, enc)  # (B, V)
                if l < t or (how == "gold" and l < t + k):
                    y = gold[:, l]
                elif l < t + k:
                    y = (_second(logits, gold[:, l]) if how == "second" else
                         _random_other(noise, gold[:, l], g))
                else:
                    pred = logits.argmax(-1)  # (B,)
                    m = mask[:, l]
                    hit = (pred == gold[:, l]) & m
                    right += int(hit.sum())
                    tokens += int(m.sum())
                    ok &= hit | ~m
                    nll = -torch.log_softmax(logits.float(), -1).gather(
                        1, gold[:, l:l + 1]).squeeze(1)  # (B,)
                    loss += float((nll * m).sum())
                    y = pred
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


def probe(model, data, batch_size: int, device, ks=(1, 2, 4), t: int = 2,
          hows=("random", "second"), seed: int = 0) -> Dict[str, Dict[str, float]]:
    """:func:`inject` at position ``t`` for each ``k`` and ``how``, and the clean run for
    each ``k`` (``gold_k``): ``{"HOW_K": result}``."""
    out = {}
    for k in ks:
        for how in ("gold", *hows):
            out[f"{how}_{k}"] = inject(model, data, t, k, how, batch_size, device, seed)
    return out


def csv_rows(settings, results) -> list:
    """One row per setting, seed, scored set, ``how`` and ``k`` of every run that probed it
    (``result["injection"]``), the clean run (``how`` gold) beside each."""
    rows = []
    for s in settings:
        for r in results[s.label]:
            for name, res in (r.get("injection") or {}).items():
                for key, v in res.items():
                    how, _, k = key.rpartition("_")
                    rows.append({"setting": s.label, "seed": r.get("seed"), "set": name,
                                 "how": how, "k": int(k), **v})
    return rows
