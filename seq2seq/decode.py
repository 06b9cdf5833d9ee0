"""Greedy search, batched: every sentence steps together until all have produced EOS."""

import sys
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .data import collate
from .tokenizer import BOS, EOS, PAD


@torch.inference_mode()
def greedy(model, src: Tensor, src_len: Tensor, max_len_a: float = 1.5, max_len_b: int = 10,
           return_attention: bool = False) -> Tuple[List[List[int]], Optional[List[Tensor]]]:
    """Greedy decoding of a batch.

    Args:
        model: a :class:`seq2seq.model.Seq2Seq` (put it in eval mode first).
        src ``(B, S)``, src_len ``(B,)``: the padded source batch.
        max_len_a, max_len_b: a sentence stops after ``a * src_len + b`` tokens at most.
        return_attention: also return each sentence's attention weights ``(T_i, S_i)``.

    Returns:
        token ids per sentence (without BOS/EOS), and the attention maps (or None).
    """
    enc = model.encoder(src, src_len)
    state = model.decoder.start(enc)
    B = src.size(0)
    limit = (max_len_a * src_len.to(src.device).float() + max_len_b).long().clamp(min=1)  # (B,)
    y = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    steps, maps = [], []
    for t in range(int(limit.max())):
        logits, state, weights = model.decoder.step(y, state, enc)  # (B, V)
        y = logits.argmax(-1).masked_fill(done, PAD)  # (B,)
        steps.append(y)
        if return_attention and weights is not None:
            maps.append(weights)
        done = done | (y == EOS) | (t + 1 >= limit)
        if bool(done.all()):
            break
    out = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in range(B)]  # (B, T)
    hyps = []
    for row in out:
        hyp = []
        for tok in row:
            if tok in (EOS, PAD):
                break
            hyp.append(tok)
        hyps.append(hyp)
    if not (return_attention and maps):
        return hyps, None
    att = torch.stack(maps, dim=1)  # (B, T, S)
    lens = src_len.tolist()
    return hyps, [att[i, :len(h) + 1, :lens[i]].float().cpu() for i, h in enumerate(hyps)]


def translate(model, tok, lines: Sequence[str], batch_size: int = 128, max_len_a: float = 1.5,
              max_len_b: int = 10, max_src_len: int = 1024, device="cpu",
              progress: bool = False, return_attention: bool = False):
    """Translate text lines; exactly one output per input, in input order.

    Empty (or whitespace-only) lines give empty outputs without being decoded. Sources longer
    than ``max_src_len`` pieces are truncated (with a warning on stderr). Lines are decoded in
    batches of similar length and put back in order. With ``return_attention``, also returns
    per line ``(source pieces, output pieces, weights (T, S))`` or None.
    """
    from tqdm import tqdm

    ids = tok.encode_src(lines)
    todo = [i for i, l in enumerate(lines) if l.strip()]
    truncated = [i for i in todo if len(ids[i]) > max_src_len]
    if truncated:
        print(f"warning: {len(truncated)} line(s) longer than {max_src_len} pieces truncated "
              f"(first: line {truncated[0] + 1})", file=sys.stderr)
    todo.sort(key=lambda i: len(ids[i]))
    out = [""] * len(lines)
    maps = [None] * len(lines)
    batches = [todo[k:k + batch_size] for k in range(0, len(todo), batch_size)]
    for b in tqdm(batches, desc="translate", unit="batch", disable=not progress, leave=False):
        src = [ids[i][:max_src_len] for i in b]
        batch = collate(src, None, b).to(device)
        hyps, att = greedy(model, batch.src, batch.src_len, max_len_a, max_len_b,
                           return_attention)
        for i, h, text in zip(b, hyps, tok.decode_tgt(hyps)):
            out[i] = text.replace("\n", " ")
        if att is not None:
            for k, i in enumerate(b):
                maps[i] = ([tok.src.id_to_piece(x) for x in src[k]],
                           tok.tgt_pieces(hyps[k]) + ["</s>"], att[k])
    return (out, maps) if return_attention else out
