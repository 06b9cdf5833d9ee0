"""Search: batched greedy and beam search; ``translate`` for lines of text.

Both step every sentence of a batch together (beam search: every beam of every sentence) and
stop when every sentence has finished: at EOS, or at the output limit ``a * source pieces + b``
(:mod:`seq2seq.data.lengths`), where an output that did not say EOS is cut short. ``model`` may be
one model or an
:class:`seq2seq.decoding.ensemble.Ensemble`; :mod:`seq2seq.decoding.constraints` says what may come at each
step (forced prefixes, no repeated n-grams), :mod:`seq2seq.decoding.sampling` replaces greedy's argmax
by a draw.
"""

import math
import sys
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from seq2seq.config import DecodeConfig
from seq2seq.data.batching import collate, unpad
from seq2seq.data.lengths import (
    FALLBACK,
    OutputLimit,
    count_truncated,
    output_lengths,
    resolve,
    truncation_warning,
)
from seq2seq.data.tokenizer import BOS, EOS, PAD
from seq2seq.kernels.device import bf16_autocast, bf16_weights
from seq2seq.kernels.argmax import argmax

from .constraints import Constraints, coverage_penalty
from .ensemble import Ensemble
from .sampling import Sampler, sample_keys


class Greedy(NamedTuple):
    """What :func:`greedy` returns, per sentence of the batch."""

    hyps: List[List[int]]  # output token ids, without BOS/EOS
    attention: Optional[List[Tensor]]  # with return_attention: weights (T_i, S_i), else None
    log_probs: Optional[List[float]]  # with log_probs: log P(output [+ EOS] | source), else None


class Hypothesis(NamedTuple):
    """One finished hypothesis of :func:`beam_search`."""

    score: float  # what ranks the hypotheses: log P / lp (+ the coverage penalty)
    tokens: List[int]  # output token ids, without BOS/EOS
    log_prob: float  # log P(tokens + EOS | source); without EOS when cut at the length limit


@torch.inference_mode()
def greedy(model, src: Tensor, src_len: Tensor, max_len_a: float = FALLBACK.a,
           max_len_b: int = FALLBACK.b,
           return_attention: bool = False, *, constraints: Optional[Constraints] = None,
           pick: Optional[Callable[[Tensor, Tensor, int], Tensor]] = None,
           log_probs: bool = False, check_cancelled: Callable[[], None] = lambda: None
           ) -> Greedy:
    """Greedy decoding of a batch (or sampling, with ``pick``).

    Args:
        model: a :class:`seq2seq.model.seq2seq.Seq2Seq` or an :class:`~seq2seq.decoding.ensemble.Ensemble`
            (in eval mode).
        src ``(B, S)``, src_len ``(B,)``: the padded source batch.
        max_len_a, max_len_b: a sentence stops after ``a * src_len + b`` tokens at most (or
            one more than its forced prefix, if that is longer).
        return_attention: also return each sentence's attention weights ``(T_i, S_i)``.
        constraints: forced prefixes, no repeated n-grams (:mod:`seq2seq.decoding.constraints`).
        pick: chooses the next tokens from ``scores (b, V)``, the rows ``(b,)`` of the batch
            still decoding and the step; default the argmax (a
            :class:`seq2seq.decoding.sampling.Sampler` samples).
        log_probs: also return each output's log-probability under the model (the unmodified
            distribution: no temperature, no filtering), EOS included when it was said.
        check_cancelled: called before each step; whatever it raises ends the search (the
            server's timed-out requests); when it returns, nothing changes.

    Returns: a :class:`Greedy` (token ids per sentence, without BOS/EOS).

    Attention keys are projected once per batch (:meth:`Decoder.start`); once a quarter of the
    sentences still in the batch have finished, they are dropped from it, so long sentences do
    not drag the finished ones along.
    """
    models = Ensemble.of(model)
    state = models.start(src, src_len)
    B, S = src.shape
    limit = output_lengths(src_len.to(src.device), max_len_a, max_len_b)  # (B,), EOS included
    rows = torch.arange(B, device=src.device)  # the sentences in the batch, (b,)
    if constraints is not None and constraints.min_length(rows) is not None:
        limit = torch.maximum(limit, constraints.min_length(rows))
    T = int(limit.max())
    out = torch.full((B, T), PAD, dtype=torch.long, device=src.device)  # (B, T)
    att = src.new_zeros(B, T, S, dtype=torch.float) if return_attention else None
    total = torch.zeros(B, dtype=torch.float64, device=src.device) if log_probs else None
    finished = torch.zeros(B, dtype=torch.bool, device=src.device)  # (b,)
    y = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    for t in range(T):
        check_cancelled()
        scores, state, weights = models.step(y, state)  # (b, V)
        logp = torch.log_softmax(scores.float(), -1) if total is not None else None  # (b, V)
        scores[:, PAD] = float("-inf")  # never predicted, as in beam search
        if constraints is not None:
            banned = constraints.banned(out[rows, :t], t, rows, scores.size(-1))
            if banned is not None:
                scores = scores.masked_fill(banned, float("-inf"))
        y = argmax(scores) if pick is None else pick(scores, rows, t)  # (b,)
        out[rows, t] = y.masked_fill(finished, PAD)  # finished rows wait for the next compaction
        if total is not None:
            total[rows] += logp.gather(1, y.unsqueeze(1)).squeeze(1).masked_fill(finished, 0.0)
        if att is not None and weights is not None:
            att[rows, t] = weights.float()
        finished = finished | (y == EOS) | (t + 1 >= limit)
        n_done = int(finished.sum())
        if n_done == len(rows):
            break
        if n_done * 4 >= len(rows):  # a quarter has finished: drop them from the batch
            keep = (~finished).nonzero().squeeze(1)  # (b',)
            rows, y, limit, finished = rows[keep], y[keep], limit[keep], finished[keep]
            state = state.keep(keep)
    hyps = unpad(out.tolist())
    lps = None if total is None else total.tolist()
    if att is None:
        return Greedy(hyps, None, lps)
    lens = src_len.tolist()
    ends = out.tolist()  # a row per output token, plus one for EOS when the sentence said it
    return Greedy(hyps, [att[i, :len(h) + int(len(h) < T and ends[i][len(h)] == EOS), :lens[i]]
                         .cpu() for i, h in enumerate(hyps)], lps)


def gnmt_length_penalty(length: Tensor, alpha: float) -> Tensor:
    """Wu et al. (2016), eq. 14: ``lp(Y) = ((5 + |Y|) / 6) ** alpha``; scores are ``log P / lp``."""
    return ((5.0 + length.float()) / 6.0) ** alpha


@torch.inference_mode()
def beam_search(model, src: Tensor, src_len: Tensor, beam: int = 5, length_penalty: float = 1.0,
                n_best: int = 1, max_len_a: float = FALLBACK.a, max_len_b: int = FALLBACK.b, *,
                constraints: Optional[Constraints] = None, coverage: float = 0.0,
                check_cancelled: Callable[[], None] = lambda: None) -> List[List[Hypothesis]]:
    """Beam search, batched over sentences and beams.

    Args:
        model: a :class:`seq2seq.model.seq2seq.Seq2Seq` or an :class:`~seq2seq.decoding.ensemble.Ensemble`
            (in eval mode).
        src ``(B, S)``, src_len ``(B,)``: the padded source batch.
        beam: beams per sentence ``K``.
        length_penalty: ``alpha`` of the GNMT length normalization (0: raw log-probability).
        n_best: hypotheses to return per sentence (``<= beam``).
        max_len_a, max_len_b: at most ``a * src_len + b`` tokens per sentence (or one more
            than its forced prefix, if that is longer).
        constraints: forced prefixes, no repeated n-grams (:mod:`seq2seq.decoding.constraints`).
        coverage: ``beta`` of GNMT's coverage penalty (0: none; needs attention): finished
            hypotheses are ranked by ``log P / lp + cp`` (Wu et al., 2016, eq. 14).
        check_cancelled: called before each step, as in :func:`greedy`.

    Returns:
        per sentence, up to ``n_best`` :class:`Hypothesis` (score, tokens, log-probability),
        best first.

    A hypothesis that emits EOS is finished; a sentence is done when it has ``n_best`` finished
    hypotheses and no live beam can still beat the worst of them (a live score can only fall,
    its length penalty is at most that of the maximum length, and the coverage penalty is at
    most 0), or at its maximum length.
    """
    models = Ensemble.of(model)
    B, K = src.size(0), beam
    n_best = min(n_best, K)
    state = models.start(src, src_len, repeat=K)
    owner = torch.arange(B, device=src.device).repeat_interleave(K)  # sentence of a row, (B*K,)
    limit = output_lengths(src_len, max_len_a, max_len_b)  # (B,), EOS included
    if constraints is not None and constraints.min_length(owner[::K]) is not None:
        limit = torch.maximum(limit, constraints.min_length(owner[::K]).to(limit.device))
    limit = limit.tolist()
    max_len = max(limit)
    cov = None  # attention each source position received, (B*K, S)
    if coverage:
        if not models.has_attention:
            raise ValueError("the coverage penalty needs a model with attention")
        pad_mask = state.enc[0].pad_mask  # (B*K, S)
        cov = torch.zeros(pad_mask.shape, device=src.device)
    scores = torch.full((B, K), float("-inf"), device=src.device)
    scores[:, 0] = 0.0  # one live beam per sentence at the start
    tokens = torch.full((B * K, 0), BOS, dtype=torch.long, device=src.device)  # (B*K, t)
    y = torch.full((B * K,), BOS, dtype=torch.long, device=src.device)
    finished: List[List[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B
    base = (torch.arange(B, device=src.device) * K).unsqueeze(1)  # (B, 1)
    for t in range(max_len):
        check_cancelled()
        logits, state, weights = models.step(y, state)  # (B*K, V)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B*K, V)
        logp[:, PAD] = float("-inf")
        V = logp.size(-1)
        if constraints is not None:
            banned = constraints.banned(tokens, t, owner, V)
            if banned is not None:
                logp = logp.masked_fill(banned, float("-inf"))
        if cov is not None:
            cov = cov + weights.float()  # (B*K, S): this step's attention counts
        cand = (scores.view(B * K, 1) + logp).view(B, K * V)  # (B, K*V)
        top, idx = cand.topk(2 * K, dim=1)  # (B, 2K): enough for K live beams after EOS ones
        src_beam, tok = idx // V, idx % V  # (B, 2K)
        is_eos = tok == EOS
        at_limit = torch.tensor([t + 1 >= l for l in limit], device=src.device).unsqueeze(1)
        lp = gnmt_length_penalty(torch.tensor(t + 1), length_penalty)
        # finish: EOS candidates ranked within the first K, and every live beam at the limit
        fin = (is_eos & (torch.arange(2 * K, device=src.device) < K)) | (at_limit & ~is_eos)
        fin &= torch.isfinite(top)
        fin_list = fin.nonzero().tolist()
        cp = (coverage_penalty(cov, pad_mask, coverage).tolist() if cov is not None and fin_list
              else None)
        for b, j in fin_list:
            if done[b]:
                continue
            r = int(base[b, 0] + src_beam[b, j])
            row = tokens[r].tolist()
            hyp = row if bool(is_eos[b, j]) else row + [int(tok[b, j])]
            log_prob = float(top[b, j])
            finished[b].append(Hypothesis(log_prob / float(lp) + (cp[r] if cp else 0.0), hyp,
                                          log_prob))
        # the next live beams: the best K candidates that are not EOS
        live = top.masked_fill(is_eos, float("-inf"))  # (B, 2K)
        scores, pick = live.topk(K, dim=1)  # (B, K)
        rows = (base + src_beam.gather(1, pick)).view(-1)  # (B*K,)
        y = tok.gather(1, pick).view(-1)  # (B*K,)
        tokens = torch.cat([tokens[rows], y.unsqueeze(1)], dim=1)  # (B*K, t+1)
        state = state.reorder(rows)
        if cov is not None:
            cov = cov[rows]
        best_live = scores[:, 0].tolist()
        for b in range(B):
            if done[b]:
                continue
            fb = sorted(finished[b], key=lambda x: -x.score)
            if t + 1 >= limit[b]:
                done[b] = True
            elif len(fb) >= n_best:
                bound = best_live[b] / float(gnmt_length_penalty(torch.tensor(limit[b]),
                                                                  length_penalty))
                done[b] = not (bound > fb[n_best - 1].score) or not math.isfinite(best_live[b])
        if all(done):
            break
        scores = scores.masked_fill(torch.tensor(done, device=src.device).unsqueeze(1),
                                    float("-inf"))
    return [sorted(f, key=lambda x: -x.score)[:n_best] for f in finished]


class Translations(NamedTuple):
    """What :func:`translate` returns, one item per input line, in input order."""

    hyps: list  # a string per line; with n_best > 1 a list of n_best strings
    log_probs: Optional[list]  # with log_probs: the same shape, each output's log-probability
    attention: Optional[list]  # with return_attention: (source pieces, output pieces, weights)
    truncated: int = 0  # lines whose (first) output stopped at the output limit, not at EOS
    decoded: int = 0  # lines decoded (empty lines are not)
    limit: OutputLimit = FALLBACK  # the output limit used


@torch.inference_mode()
def force_decode(model, src: Tensor, src_len: Tensor, tgt: Sequence[Sequence[int]]
                 ) -> Tuple[List[float], Optional[List[Tensor]]]:
    """Step the decoder through given outputs, as the searches step it (so for both engines).

    Args:
        model: a :class:`seq2seq.model.seq2seq.Seq2Seq` in eval mode, an exported model, or an
            :class:`~seq2seq.decoding.ensemble.Ensemble`.
        src ``(B, S)``, src_len ``(B,)``: the padded source batch.
        tgt: per sentence, the output ids (without BOS/EOS).

    Returns:
        per sentence ``log P(tgt + EOS | src)`` (natural log, no length normalization: beam
        search's score with ``length_penalty=0``), and the attention weights
        ``(len(tgt) + 1, S_i)`` of each step, the last one EOS's (None without attention).
    """
    from seq2seq.data.batching import pad

    B, S = src.shape
    gold = pad([list(t) + [EOS] for t in tgt]).to(src.device)  # (B, T), PAD after EOS
    T = gold.size(1)
    models = Ensemble.of(model)
    state = models.start(src, src_len)
    y = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    logp = torch.zeros(B, device=src.device)
    att = None
    for t in range(T):
        logits, state, weights = models.step(y, state)  # (B, V)
        g = gold[:, t]  # (B,)
        step = torch.log_softmax(logits.float(), dim=-1).gather(1, g.unsqueeze(1)).squeeze(1)
        logp += step.masked_fill(g == PAD, 0.0)
        if weights is not None:
            att = att if att is not None else src.new_zeros(B, T, S, dtype=torch.float)
            att[:, t] = weights.float()  # (B, S)
        y = g.masked_fill(g == PAD, EOS)  # after the end: any token, the rows are not read
    lens = src_len.tolist()
    maps = None if att is None else [att[i, :len(tgt[i]) + 1, :lens[i]].cpu() for i in range(B)]
    return logp.tolist(), maps


def translate(model, tok, lines: Sequence[str], opts: DecodeConfig = DecodeConfig(),
              device="cpu", progress: bool = False, return_attention: bool = False,
              prefixes: Optional[Sequence[str]] = None, log_probs: bool = False,
              warn: bool = True, check_cancelled: Callable[[], None] = lambda: None
              ) -> Translations:
    """Translate text lines; exactly one output per input, in input order.

    The output limit is ``opts.max_len_a/b``, or where None the limit learned from the training
    data (which :func:`seq2seq.load.load_model` fills in), else
    :data:`seq2seq.data.lengths.FALLBACK`; outputs that stopped at it instead of at EOS are counted
    (``truncated``) and, with ``warn``, when they are more than 1% a warning says so on stderr.

    ``model``: one model or an :class:`~seq2seq.decoding.ensemble.Ensemble`. ``opts``: how to decode (a
    :class:`seq2seq.config.DecodeConfig`: beam, length penalty, n-best, sampling, repetition
    control, length limits, batch size, bf16). Empty (or whitespace-only) lines give empty
    outputs (their prefix, if any) without being decoded. Sources longer than
    ``opts.max_src_len`` pieces are truncated (with a warning on stderr). Lines are decoded in
    batches of similar length and put back in order. ``opts.beam > 1`` uses
    :func:`beam_search`, else :func:`greedy` (with ``opts.sample``, drawing ``opts.n_best``
    samples per line); with ``opts.n_best > 1`` each output is a list of ``n_best`` strings.
    ``prefixes``: one target prefix per line ("" for none) that the output starts with.
    ``log_probs``: also return each output's log-probability (of its pieces and EOS). With
    ``return_attention`` (greedy only), also returns per line ``(source pieces, output pieces,
    weights (T, S))`` or None. ``check_cancelled``: called before each step of the searches
    (:func:`greedy`); whatever it raises ends the translation.
    """
    from tqdm import tqdm

    models = Ensemble.of(model)
    if opts.bf16 and all(isinstance(m, torch.nn.Module) for m in models.models):
        models = Ensemble([bf16_weights(m) for m in models.models])  # cast once, not per step
    ids = tok.encode_src(lines)
    if prefixes is not None and len(prefixes) != len(lines):
        raise ValueError(f"{len(prefixes)} prefixes for {len(lines)} lines")
    forced = tok.encode_tgt(prefixes) if prefixes is not None else [[] for _ in lines]
    todo = [i for i, l in enumerate(lines) if l.strip()]
    truncated = [i for i in todo if len(ids[i]) > opts.max_src_len]
    if truncated:
        print(f"warning: {len(truncated)} line(s) longer than {opts.max_src_len} pieces "
              f"truncated (first: line {truncated[0] + 1})", file=sys.stderr)
    todo.sort(key=lambda i: len(ids[i]))
    limit = resolve(opts)  # decode.max_len_a/b; None: the learned limit, filled in by load_model
    n_best, cut_short = opts.n_best, 0
    out = [[p] * n_best for p in (prefixes or [""] * len(lines))]
    scores: List[list] = [[None] * n_best for _ in lines]
    maps = [None] * len(lines)
    batch_size = max(1, opts.batch_size // (n_best if opts.sample else opts.beam))
    batches = [todo[k:k + batch_size] for k in range(0, len(todo), batch_size)]
    with bf16_autocast(device, opts.bf16):
        for b in tqdm(batches, desc="translate", unit="batch", disable=not progress, leave=False):
            src = [ids[i][:opts.max_src_len] for i in b]
            rep = n_best if opts.sample else 1  # samples: each line n_best times
            batch = collate([s for s in src for _ in range(rep)], None,
                            [i for i in b for _ in range(rep)]).to(device)
            rules = Constraints.make([forced[i] for i in b for _ in range(rep)],
                                     opts.no_repeat_ngram, device)
            if opts.beam > 1:
                nbest = beam_search(models, batch.src, batch.src_len, opts.beam,
                                    opts.length_penalty, n_best, limit.a, limit.b,
                                    constraints=rules, coverage=opts.coverage_penalty,
                                    check_cancelled=check_cancelled)
                nbest = [x + [Hypothesis(None, [], None)] * (n_best - len(x)) for x in nbest]
                hyps = [[h.tokens for h in x] for x in nbest]
                lps = [[h.log_prob for h in x] for x in nbest]
            else:
                pick = None
                if opts.sample:
                    pick = Sampler(sample_keys(opts.seed, b, n_best, device), opts.temperature,
                                   opts.top_k, opts.top_p)
                g = greedy(models, batch.src, batch.src_len, limit.a, limit.b,
                           return_attention, constraints=rules, pick=pick, log_probs=log_probs,
                           check_cancelled=check_cancelled)
                lp = g.log_probs or [None] * len(g.hyps)
                hyps = [g.hyps[k:k + rep] + [[]] * (n_best - rep)
                        for k in range(0, len(g.hyps), rep)]
                lps = [lp[k:k + rep] + [None] * (n_best - rep) for k in range(0, len(lp), rep)]
                if g.attention is not None:
                    for k, i in enumerate(b):
                        eos = ["</s>"] if g.attention[k].size(0) > len(g.hyps[k]) else []
                        maps[i] = (tok.src_pieces(src[k]),
                                   tok.tgt_pieces(g.hyps[k]) + eos, g.attention[k])
            cut_short += count_truncated([len(x) for x in src], [len(h[0]) for h in hyps], limit)
            for i, hs, ls in zip(b, hyps, lps):
                out[i] = [t.replace("\n", " ") for t in tok.decode_tgt(hs)]
                scores[i] = ls
    if n_best == 1:
        out, scores = [o[0] for o in out], [s[0] for s in scores]
    if warn:
        warning = truncation_warning(cut_short, len(todo), "translated", limit)
        if warning:
            print(warning, file=sys.stderr)
    return Translations(out, scores if log_probs else None, maps if return_attention else None,
                        cut_short, len(todo), limit)
