"""Search: batched greedy and beam search; ``translate`` for lines of text.

Both step every sentence of a batch together (beam search: every beam of every sentence) and
stop when every sentence has finished: at EOS, or at the output limit ``a * source pieces + b``
(:mod:`seq2seq.lengths`), where an output that did not say EOS is cut short.
"""

import math
import sys
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .batching import collate
from .config import DecodeConfig
from .cpu_kernels import argmax
from .device import bf16_autocast
from .encoder import Encoded
from .lengths import (FALLBACK, OutputLimit, count_truncated, output_lengths, resolve,
                      truncation_warning)
from .tokenizer import BOS, EOS, PAD


@torch.inference_mode()
def greedy(model, src: Tensor, src_len: Tensor, max_len_a: float = FALLBACK.a,
           max_len_b: int = FALLBACK.b, return_attention: bool = False
           ) -> Tuple[List[List[int]], Optional[List[Tensor]]]:
    """Greedy decoding of a batch.

    Args:
        model: a :class:`seq2seq.model.Seq2Seq` (put it in eval mode first).
        src ``(B, S)``, src_len ``(B,)``: the padded source batch.
        max_len_a, max_len_b: a sentence stops after ``a * src_len + b`` tokens at most (EOS
            included; :func:`seq2seq.lengths.output_lengths`).
        return_attention: also return each sentence's attention weights ``(T_i, S_i)``.

    Returns:
        token ids per sentence (without BOS/EOS), and the attention maps (or None).

    Attention keys are projected once per batch (:meth:`Decoder.start`); once a quarter of the
    sentences still in the batch have finished, they are dropped from it, so long sentences do
    not drag the finished ones along.
    """
    enc = model.encoder(src, src_len)
    state = model.decoder.start(enc)
    B, S = src.shape
    limit = output_lengths(src_len.to(src.device), max_len_a, max_len_b)  # (B,)
    T = int(limit.max())
    out = torch.full((B, T), PAD, dtype=torch.long, device=src.device)  # (B, T)
    att = src.new_zeros(B, T, S, dtype=torch.float) if return_attention else None
    rows = torch.arange(B, device=src.device)  # the sentences in the batch, (b,)
    finished = torch.zeros(B, dtype=torch.bool, device=src.device)  # (b,)
    y = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    project = model.decoder.projector(B)
    for t in range(T):
        logits, state, weights = model.decoder.step(y, state, enc, project)  # (b, V)
        logits[:, PAD] = float("-inf")  # never predicted, as in beam search
        y = argmax(logits)  # (b,)
        out[rows, t] = y.masked_fill(finished, PAD)  # finished rows wait for the next compaction
        if att is not None and weights is not None:
            att[rows, t] = weights.float()
        finished = finished | (y == EOS) | (t + 1 >= limit)
        n_done = int(finished.sum())
        if n_done == len(rows):
            break
        if n_done * 4 >= len(rows):  # a quarter has finished: drop them from the batch
            keep = (~finished).nonzero().squeeze(1)  # (b',)
            rows, y, limit, finished = rows[keep], y[keep], limit[keep], finished[keep]
            state = state.select(keep)
            enc = Encoded(enc.out[keep], enc.pad_mask[keep], enc.state)
    hyps = []
    for row in out.tolist():
        hyp = []
        for tok in row:
            if tok in (EOS, PAD):
                break
            hyp.append(tok)
        hyps.append(hyp)
    if att is None:
        return hyps, None
    lens = src_len.tolist()
    ends = out.tolist()  # a row per output token, plus one for EOS when the sentence said it
    return hyps, [att[i, :len(h) + int(len(h) < T and ends[i][len(h)] == EOS), :lens[i]].cpu()
                  for i, h in enumerate(hyps)]


def gnmt_length_penalty(length: Tensor, alpha: float) -> Tensor:
    """Wu et al. (2016), eq. 14: ``lp(Y) = ((5 + |Y|) / 6) ** alpha``; scores are ``log P / lp``."""
    return ((5.0 + length.float()) / 6.0) ** alpha


@torch.inference_mode()
def beam_search(model, src: Tensor, src_len: Tensor, beam: int = 5, length_penalty: float = 1.0,
                n_best: int = 1, max_len_a: float = FALLBACK.a, max_len_b: int = FALLBACK.b
                ) -> List[List[Tuple[float, List[int]]]]:
    """Beam search, batched over sentences and beams.

    Args:
        model: a :class:`seq2seq.model.Seq2Seq` in eval mode.
        src ``(B, S)``, src_len ``(B,)``: the padded source batch.
        beam: beams per sentence ``K``.
        length_penalty: ``alpha`` of the GNMT length normalization (0: raw log-probability).
        n_best: hypotheses to return per sentence (``<= beam``).
        max_len_a, max_len_b: at most ``a * src_len + b`` tokens per sentence.

    Returns:
        per sentence, up to ``n_best`` ``(normalized score, token ids)`` pairs, best first.

    A hypothesis that emits EOS is finished; a sentence is done when it has ``n_best`` finished
    hypotheses and no live beam can still beat the worst of them (a live score can only fall,
    and its length penalty is at most that of the maximum length), or at its maximum length.
    """
    B, K = src.size(0), beam
    n_best = min(n_best, K)
    enc = model.encoder(src, src_len)
    rep = torch.arange(B, device=src.device).repeat_interleave(K)  # (B*K,)
    enc = Encoded(enc.out[rep], enc.pad_mask[rep], enc.state.map(lambda t: t[:, rep]))
    state = model.decoder.start(enc)
    limit = output_lengths(src_len, max_len_a, max_len_b).tolist()  # per sentence
    max_len = max(limit)
    scores = torch.full((B, K), float("-inf"), device=src.device)
    scores[:, 0] = 0.0  # one live beam per sentence at the start
    tokens = torch.full((B * K, 0), BOS, dtype=torch.long, device=src.device)  # (B*K, t)
    y = torch.full((B * K,), BOS, dtype=torch.long, device=src.device)
    finished: List[List[Tuple[float, List[int]]]] = [[] for _ in range(B)]
    done = [False] * B
    base = (torch.arange(B, device=src.device) * K).unsqueeze(1)  # (B, 1)
    project = model.decoder.projector(B * K)
    for t in range(max_len):
        logits, state, _ = model.decoder.step(y, state, enc, project)  # (B*K, V)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B*K, V)
        logp[:, PAD] = float("-inf")
        V = logp.size(-1)
        cand = (scores.view(B * K, 1) + logp).view(B, K * V)  # (B, K*V)
        top, idx = cand.topk(2 * K, dim=1)  # (B, 2K): enough for K live beams after EOS ones
        src_beam, tok = idx // V, idx % V  # (B, 2K)
        is_eos = tok == EOS
        at_limit = torch.tensor([t + 1 >= l for l in limit], device=src.device).unsqueeze(1)
        lp = gnmt_length_penalty(torch.tensor(t + 1), length_penalty)
        # finish: EOS candidates ranked within the first K, and every live beam at the limit
        fin = (is_eos & (torch.arange(2 * K, device=src.device) < K)) | (at_limit & ~is_eos)
        fin &= torch.isfinite(top)
        for b, j in fin.nonzero().tolist():
            if done[b]:
                continue
            row = tokens[base[b, 0] + src_beam[b, j]].tolist()
            hyp = row if bool(is_eos[b, j]) else row + [int(tok[b, j])]
            finished[b].append((float(top[b, j]) / float(lp), hyp))
        # the next live beams: the best K candidates that are not EOS
        live = top.masked_fill(is_eos, float("-inf"))  # (B, 2K)
        scores, pick = live.topk(K, dim=1)  # (B, K)
        rows = (base + src_beam.gather(1, pick)).view(-1)  # (B*K,)
        y = tok.gather(1, pick).view(-1)  # (B*K,)
        tokens = torch.cat([tokens[rows], y.unsqueeze(1)], dim=1)  # (B*K, t+1)
        state = state.select(rows)
        best_live = scores[:, 0].tolist()
        for b in range(B):
            if done[b]:
                continue
            fb = sorted(finished[b], key=lambda x: -x[0])
            if t + 1 >= limit[b]:
                done[b] = True
            elif len(fb) >= n_best:
                bound = best_live[b] / float(gnmt_length_penalty(torch.tensor(limit[b]),
                                                                  length_penalty))
                done[b] = not (bound > fb[n_best - 1][0]) or not math.isfinite(best_live[b])
        if all(done):
            break
        scores = scores.masked_fill(torch.tensor(done, device=src.device).unsqueeze(1),
                                    float("-inf"))
    return [sorted(f, key=lambda x: -x[0])[:n_best] for f in finished]


class Translations(NamedTuple):
    """What :func:`decode_lines` gives back."""

    outputs: list  # per line, a string (with n_best > 1, a list of n_best strings)
    truncated: int  # lines whose (best) output stopped at the output limit instead of at EOS
    decoded: int  # lines decoded (empty lines are not)
    limit: OutputLimit  # the output limit used
    attention: Optional[list]  # with return_attention: per line (src pieces, out pieces, (T, S))


def decode_lines(model, tok, lines: Sequence[str], opts: DecodeConfig = DecodeConfig(),
                 device="cpu", progress: bool = False, return_attention: bool = False
                 ) -> Translations:
    """Translate text lines; exactly one output per input, in input order.

    ``opts``: how to decode (a :class:`seq2seq.config.DecodeConfig`: beam, length penalty,
    n-best, length limits, batch size, bf16); ``max_len_a``/``max_len_b`` left None mean
    :data:`seq2seq.lengths.FALLBACK` (a checkpoint's learned limit is filled in by
    :func:`seq2seq.checkpoint.load_model`). Empty (or whitespace-only) lines give empty
    outputs without being decoded. Sources longer than ``opts.max_src_len`` pieces are
    truncated (with a warning on stderr). Lines are decoded in batches of similar length and
    put back in order. ``opts.beam > 1`` uses :func:`beam_search`, else :func:`greedy`; with
    ``opts.n_best > 1`` each output is a list of ``n_best`` strings. With
    ``return_attention`` (greedy only), also gives per line ``(source pieces, output pieces,
    weights (T, S))`` or None.
    """
    from tqdm import tqdm

    ids = tok.encode_src(lines)
    todo = [i for i, l in enumerate(lines) if l.strip()]
    truncated = [i for i in todo if len(ids[i]) > opts.max_src_len]
    if truncated:
        print(f"warning: {len(truncated)} line(s) longer than {opts.max_src_len} pieces "
              f"truncated (first: line {truncated[0] + 1})", file=sys.stderr)
    todo.sort(key=lambda i: len(ids[i]))
    limit = resolve(opts)
    n_best, cut_short = opts.n_best, 0
    out = [[""] * n_best for _ in lines]
    maps = [None] * len(lines)
    batch_size = max(1, opts.batch_size // opts.beam)
    batches = [todo[k:k + batch_size] for k in range(0, len(todo), batch_size)]
    with bf16_autocast(device, opts.bf16):
        for b in tqdm(batches, desc="translate", unit="batch", disable=not progress, leave=False):
            src = [ids[i][:opts.max_src_len] for i in b]
            batch = collate(src, None, b).to(device)
            if opts.beam > 1:
                nbest = beam_search(model, batch.src, batch.src_len, opts.beam,
                                    opts.length_penalty, n_best, limit.a, limit.b)
                hyps = [[h for _, h in x] + [[]] * (n_best - len(x)) for x in nbest]
            else:
                best, att = greedy(model, batch.src, batch.src_len, limit.a, limit.b,
                                   return_attention)
                hyps = [[h] + [[]] * (n_best - 1) for h in best]
                if att is not None:
                    for k, i in enumerate(b):
                        eos = ["</s>"] if att[k].size(0) > len(best[k]) else []
                        maps[i] = (tok.src_pieces(src[k]),
                                   tok.tgt_pieces(best[k]) + eos, att[k])
            cut_short += count_truncated([len(x) for x in src], [len(h[0]) for h in hyps], limit)
            for i, hs in zip(b, hyps):
                out[i] = [t.replace("\n", " ") for t in tok.decode_tgt(hs)]
    out = [o[0] for o in out] if n_best == 1 else out
    return Translations(out, cut_short, len(todo), limit, maps if return_attention else None)


def translate(model, tok, lines: Sequence[str], opts: DecodeConfig = DecodeConfig(),
              device="cpu", progress: bool = False, return_attention: bool = False):
    """:func:`decode_lines`' outputs (and attention maps, with ``return_attention``); when more
    than 1% of them stopped at the output limit, a warning on stderr says so."""
    r = decode_lines(model, tok, lines, opts, device, progress, return_attention)
    warning = truncation_warning(r.truncated, r.decoded, "translated", r.limit)
    if warning:
        print(warning, file=sys.stderr)
    return (r.outputs, r.attention) if return_attention else r.outputs
