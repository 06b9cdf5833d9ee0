"""Requests decoded together: the translation server's one decoding thread.

    batcher = Batcher(model, tok, device, window=0.01)
    batcher.start()
    future = batcher.submit(["Ein Hund läuft."], opts, explain=True)   # any thread
    result = future.result()   # Result(translations, scores, attention)

One thread decodes every request, so the model is never run twice at once. When it is free it
takes the oldest waiting request and, for ``window`` seconds more, every request that arrives
(up to ``max_sentences`` sentences in all); requests with the same decoding options are decoded
as one :func:`seq2seq.decoding.search.translate` call, so under load each model call carries more
sentences and throughput grows with the number of clients. A request whose future was
cancelled while it waited (its client gave up) is skipped.

A request may have a deadline (``submit(..., timeout=)``: the server's timeout). Past it,
nobody waits for its translations: it is not decoded, or its decoding stops at the next step of
the search (the searches' ``check_cancelled``); its future gets a ``TimeoutError`` and the
requests decoded with it are decoded again without it. So one slow request holds the thread
for its timeout at most, not for as long as its sentences take.

Outputs cut short by the output limit are counted (``stats["truncated"]``); the warning about
them is logged once per batcher (server run), not per batch.
"""

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Dict, List, NamedTuple, Optional

from seq2seq.config import DecodeConfig
from seq2seq.cli.console import log

_STOP = object()


class Job(NamedTuple):
    lines: List[str]
    opts: DecodeConfig
    explain: bool  # also the scores and attention weights of the outputs
    future: Future
    deadline: float  # time.monotonic() past which nobody waits for the result (inf: none)


class _Late(Exception):
    """Raised inside a search when a request of its batch is past its deadline."""


class Result(NamedTuple):
    translations: List[str]
    scores: Optional[List[Optional[float]]]  # log P(output + EOS | source) per sentence
    # (None for an empty line), when explained
    attention: Optional[List[Optional[Dict[str, Any]]]]  # per sentence: source and output
    # pieces, weights (output rows x source columns); None for an empty line or no attention


def explain(model, tok, lines: List[str], hyps: List[str], max_src_len: int):
    """Scores and attention weights of the outputs ``hyps`` of ``lines``, by stepping the
    decoder through them (:func:`seq2seq.decoding.search.force_decode`); the outputs are split by the
    target tokenizer again, so this is the score of the output text."""
    from seq2seq.data.batching import collate
    from seq2seq.decoding.search import force_decode

    src = [ids[:max_src_len] for ids in tok.encode_src(lines)]
    tgt = tok.encode_tgt(hyps)
    todo = [i for i, l in enumerate(lines) if l.strip()]
    scores: List[Optional[float]] = [None] * len(lines)
    maps: List[Optional[Dict[str, Any]]] = [None] * len(lines)
    if todo:
        batch = collate([src[i] for i in todo], None, todo)
        logp, att = force_decode(model, batch.src, batch.src_len, [tgt[i] for i in todo])
        for k, i in enumerate(todo):
            scores[i] = logp[k]
            if att is not None:
                maps[i] = {"source": tok.src_pieces(src[i]),
                           "output": tok.tgt_pieces(tgt[i]) + ["</s>"],
                           "weights": [[round(w, 4) for w in row] for row in att[k].tolist()]}
    return scores, maps


class Batcher:
    """The decoding thread and its queue (see the module's docstring).

    Args:
        model, tok, device: what :func:`seq2seq.load.load_for_decoding` gives.
        window: seconds to wait for more requests once one is waiting.
        max_sentences: the most sentences decoded together (a request is never split).
        max_pending: requests allowed to wait; :meth:`submit` refuses more (the server: 503).
    """

    def __init__(self, model, tok, device, window: float = 0.01, max_sentences: int = 256,
                 max_pending: int = 1024) -> None:
        self.model, self.tok, self.device = model, tok, device
        self.window, self.max_sentences = window, max_sentences
        self.queue: "queue.Queue" = queue.Queue(maxsize=max_pending)
        self.thread = threading.Thread(target=self._run, name="seq2seq-decoder", daemon=True)
        self.stats = {"requests": 0, "sentences": 0, "model_calls": 0, "errors": 0,
                      "timed_out": 0, "truncated": 0}
        self.lock = threading.Lock()
        self.warned = False  # the truncation warning is logged once

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.queue.put(_STOP)
        self.thread.join(timeout=5)

    def submit(self, lines: List[str], opts: DecodeConfig, explain: bool = False,
               timeout: Optional[float] = None) -> Optional[Future]:
        """Queue a request; its future gets a :class:`Result` (or the decoding's exception;
        ``TimeoutError`` when it is not decoded within ``timeout`` seconds from now). None
        when ``max_pending`` requests are already waiting."""
        deadline = time.monotonic() + timeout if timeout is not None else float("inf")
        job = Job(list(lines), opts, explain, Future(), deadline)
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            return None
        return job.future

    def _collect(self, first: Job) -> List[Job]:
        jobs, n = [first], len(first.lines)
        deadline = time.monotonic() + self.window
        while n < self.max_sentences:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                job = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if job is _STOP:
                self.queue.put(_STOP)  # seen again after this batch
                break
            jobs.append(job)
            n += len(job.lines)
        jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        return [j for j in jobs if not self._timed_out(j)]

    def _timed_out(self, job: Job) -> bool:
        """Whether ``job`` is past its deadline; if so its future gets a ``TimeoutError``."""
        if time.monotonic() <= job.deadline:
            return False
        with self.lock:
            self.stats["timed_out"] += 1
        job.future.set_exception(TimeoutError("the request is past its deadline"))
        return True

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is _STOP:
                return
            jobs = self._collect(first)
            groups: Dict[DecodeConfig, List[Job]] = {}
            for j in jobs:
                groups.setdefault(j.opts, []).append(j)
            for opts, group in groups.items():
                try:
                    self._decode(opts, group)
                except Exception as e:  # the server answers 500 and goes on serving
                    with self.lock:
                        self.stats["errors"] += 1
                    log(f"seq2seq serve: decoding failed: {type(e).__name__}: {e}")
                    for j in group:
                        if not j.future.done():  # a timed-out one already has its answer
                            j.future.set_exception(e)

    def _decode(self, opts: DecodeConfig, jobs: List[Job]) -> None:
        """Decode ``jobs`` together; when one of them passes its deadline, drop it (its
        future: ``TimeoutError``) and decode the others again."""
        while jobs:
            try:
                return self._decode_together(opts, jobs)
            except _Late:
                jobs = [j for j in jobs if not self._timed_out(j)]

    def _decode_together(self, opts: DecodeConfig, jobs: List[Job]) -> None:
        from seq2seq.data.lengths import truncation_warning
        from seq2seq.decoding.search import translate

        def check_cancelled() -> None:  # before each step of the search
            now = time.monotonic()
            if any(now > j.deadline for j in jobs):
                raise _Late

        lines = [l for j in jobs for l in j.lines]
        r = translate(self.model, self.tok, lines, opts, device=self.device, warn=False,
                      check_cancelled=check_cancelled)
        hyps = r.hyps
        warning = None if self.warned else truncation_warning(r.truncated, r.decoded,
                                                              "served", r.limit)
        if warning:
            log(f"seq2seq serve: {warning} (said once; GET /health counts them)")
            self.warned = True
        check_cancelled()
        owners = [j for j in jobs for _ in j.lines]
        asked = [(l, h) for l, h, j in zip(lines, hyps, owners) if j.explain]
        scores, maps = (explain(self.model, self.tok, [l for l, _ in asked],
                                [h for _, h in asked], opts.max_src_len) if asked else ([], []))
        with self.lock:
            self.stats["requests"] += len(jobs)
            self.stats["sentences"] += len(lines)
            self.stats["model_calls"] += 1
            self.stats["truncated"] += r.truncated
        start = ex = 0
        for j in jobs:
            n = len(j.lines)
            out = hyps[start:start + n]
            start += n
            if j.explain:
                j.future.set_result(Result(out, scores[ex:ex + n], maps[ex:ex + n]))
                ex += n
            else:
                j.future.set_result(Result(out, None, None))
