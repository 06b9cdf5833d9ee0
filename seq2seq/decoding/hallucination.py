"""Hallucination: outputs unrelated to their source, counted exactly on the toy tasks with an
oracle and by a labelled proxy elsewhere. Pure functions of text and numbers (no torch).

    task = oracle_task(srcs, refs)                       # "reverse", ..., or None
    kinds = [toy_kinds(task, s, h) for s, h in zip(srcs, hyps)]      # exact, per output
    flags = proxy_flags(sentence_chrf(hyps, refs), per_token_log_probs)   # the proxy
    report = hallucination_report(srcs, refs, hyps, per_token, task)  # evaluate's keys

**Exact, on the position-aligned toy tasks** (those of :data:`seq2seq.compare.oracle.ORACLE_TASKS`:
reverse, copy, sort, length_generalization = reverse): the only right output of a source is its
oracle output (:func:`oracle_output`), fixed token by token by the source. An output (its
whitespace-separated tokens ``h``, the oracle's ``o``) is a hallucination when at least one holds:

- ``looping``: some n-gram (1 <= n <= :data:`MAX_LOOP_N`) repeats back to back at least
  :data:`LOOP_REPEATS` times in ``h``, and more times back to back than anywhere in ``o`` (the
  task's bound: sort may rightly repeat ``5 5 5``);
- ``overlong``: ``len(h) > LENGTH_FACTOR * len(o)`` (the task fixes the length at ``len(o)``);
- ``detached``: it diverges from the oracle and never returns: ``d``, the first position where
  ``h`` and ``o`` differ, is inside the oracle (``d < len(o)``: an output that runs on past a
  right one is judged by the two rules above), leaves at least :data:`DETACH_MIN` tokens
  ``h[d:]``, and no bigram of ``h[d:]`` is a bigram of ``o[d:]`` (the oracle's path is not
  picked up again, even shifted).

So a wrong but plausible output, a substitution, a swap, a dropped or doubled token, is an error
and not a hallucination; an empty output is an omission (counted by the beam sweep), not one.

The kinds may overlap (a loop that starts inside the output is usually detached too); the rate
counts each output once.

**A proxy, on everything else (translation)**: no oracle says what an output may be, so the
literature's signature of a hallucination is used (Wang and Sennrich, 2020, "On exposure bias,
hallucination and domain shift in neural machine translation", who judge outputs "fluent but
unrelated to the source"; Raunak, Menezes and Junczys-Dowmunt, 2021, "The curious case of
hallucinations in neural machine translation"): an output whose sentence chrF against the
reference is below :data:`PROXY_CHRF` while the model's own length-normalized log-probability
(per output piece, EOS included) is above the median of the set, i.e. confidently unrelated to
the reference. It is a proxy (a paraphrase with low chrF counts too; a hallucination the model
is unsure of does not), so its key says so: ``hallucination_proxy_rate``.
"""

from typing import Dict, List, Optional, Sequence

#: the n-gram sizes a loop is looked for with
MAX_LOOP_N = 4
#: back-to-back repeats of one n-gram that make a loop (when the oracle has fewer)
LOOP_REPEATS = 3
#: an output longer than this times the oracle's length is overlong
LENGTH_FACTOR = 1.5
#: tokens after the first divergence needed to call an output detached
DETACH_MIN = 3
#: sentence chrF under which a confident output is a proxy hallucination
PROXY_CHRF = 15.0
#: examples of each kind written for a human to read
EXAMPLES = 20
#: the exact kinds, in the order they are reported
KINDS = ("looping", "overlong", "detached")


def oracle_output(task: str, src: str) -> List[str]:
    """The one right output of an aligned toy task: the source's tokens reversed (reverse,
    length_generalization, reverse_small), copied (copy) or sorted as numbers (sort)."""
    tokens = src.split()
    if task in ("reverse", "length_generalization", "reverse_small"):
        return tokens[::-1]
    if task == "copy":
        return tokens
    if task == "sort":
        return sorted(tokens, key=lambda t: (float(t) if _number(t) else float("inf"), t))
    raise ValueError(f"no oracle for task {task!r}")


def _number(t: str) -> bool:
    try:
        float(t)
    except ValueError:
        return False
    return True


def oracle_task(srcs: Sequence[str], refs: Sequence[str]) -> Optional[str]:
    """The aligned toy task that every (source, reference) pair of a set follows exactly
    (copy before reverse before sort, for the pairs all three fit), or None: the data says
    which oracle applies, whatever the run's config calls it. An empty set has none."""
    pairs = [(s, r) for s, r in zip(srcs, refs)]
    if not pairs:
        return None
    for task in ("copy", "reverse", "sort"):
        if all(oracle_output(task, s) == r.split() for s, r in pairs):
            return task
    return None


def longest_run(tokens: Sequence[str], n: int) -> int:
    """The most back-to-back repeats of any n-gram in ``tokens`` (1 if none repeats; 0 when
    ``tokens`` is shorter than ``n``)."""
    best = 0
    for start in range(len(tokens) - n + 1):
        k, gram = 1, tokens[start:start + n]
        while tokens[start + k * n:start + (k + 1) * n] == gram:
            k += 1
        best = max(best, k)
    return best


def looping(hyp: Sequence[str], oracle: Sequence[str]) -> bool:
    """Some n-gram (n <= :data:`MAX_LOOP_N`) repeats back to back >= :data:`LOOP_REPEATS`
    times in ``hyp``, more than any n-gram of that size repeats in ``oracle``."""
    return any(longest_run(hyp, n) >= LOOP_REPEATS and longest_run(hyp, n) > longest_run(oracle, n)
               for n in range(1, MAX_LOOP_N + 1))


def detached(hyp: Sequence[str], oracle: Sequence[str]) -> bool:
    """Diverges from ``oracle`` and never returns (the module's definition)."""
    d = next((i for i, (h, o) in enumerate(zip(hyp, oracle)) if h != o), min(len(hyp), len(oracle)))
    rest, target = list(hyp[d:]), list(oracle[d:])
    if d >= len(oracle) or len(rest) < DETACH_MIN:
        return False
    bigrams = set(zip(target, target[1:]))
    return not any(b in bigrams for b in zip(rest, rest[1:]))


def toy_kinds(task: str, src: str, hyp: str) -> List[str]:
    """The kinds of :data:`KINDS` that an output of an aligned toy task is (empty: not a
    hallucination)."""
    o, h = oracle_output(task, src), hyp.split()
    return [k for k, hit in (("looping", looping(h, o)),
                             ("overlong", len(h) > LENGTH_FACTOR * len(o)),
                             ("detached", detached(h, o))) if hit]


def sentence_chrf(hyps: Sequence[str], refs: Sequence[str]) -> List[float]:
    """Each output's sentence chrF against its reference (sacreBLEU's defaults)."""
    import sacrebleu

    chrf = sacrebleu.CHRF()
    return [chrf.sentence_score(h, [r]).score for h, r in zip(hyps, refs)]


def median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return (s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2) if n else float("nan")


def proxy_flags(chrf: Sequence[float], per_token: Sequence[Optional[float]],
                threshold: float = PROXY_CHRF) -> List[bool]:
    """Per output: sentence chrF below ``threshold`` and length-normalized log-probability
    strictly above the median of the outputs that have one (None: not decoded, never
    flagged)."""
    known = [p for p in per_token if p is not None]
    mid = median(known)
    return [p is not None and c < threshold and p > mid for c, p in zip(chrf, per_token)]


def _rate(hits: int, n: int) -> float:
    return round(100.0 * hits / max(1, n), 2)


def hallucination_report(srcs: Sequence[str], refs: Sequence[str], hyps: Sequence[str],
                         per_token: Sequence[Optional[float]], task: Optional[str]
                         ) -> Dict[str, object]:
    """``seq2seq evaluate``'s keys (percent of the outputs; every key starts with
    ``hallucination``). With ``task`` (an aligned toy task): ``hallucination_rate`` and one
    ``hallucination_KIND`` per kind of :data:`KINDS` (an output may be of several), exact.
    Else: ``hallucination_proxy_rate`` and ``hallucination_proxy_chrf`` (the threshold).
    ``hallucination_method`` names the definition; ``hallucination_examples``: up to
    :data:`EXAMPLES` line numbers (1-based) per kind."""
    n = len(hyps)
    if task is not None:
        kinds = [toy_kinds(task, s, h) for s, h in zip(srcs, hyps)]
        out: Dict[str, object] = {"hallucination_method": f"exact: toy task {task}",
                                  "hallucination_rate": _rate(sum(bool(k) for k in kinds), n)}
        lines = {}
        for kind in KINDS:
            hit = [i for i, k in enumerate(kinds) if kind in k]
            out[f"hallucination_{kind}"] = _rate(len(hit), n)
            lines[kind] = [i + 1 for i in hit[:EXAMPLES]]
        out["hallucination_examples"] = lines
        return out
    chrf = sentence_chrf(hyps, refs)
    flags = proxy_flags(chrf, per_token)
    unsure = [i for i, (c, p) in enumerate(zip(chrf, per_token))
              if c < PROXY_CHRF and p is not None and not flags[i]]
    return {"hallucination_method": "proxy: sentence chrF < threshold and per-token "
                                    "log-probability above the median (Wang and Sennrich 2020)",
            "hallucination_proxy_rate": _rate(sum(flags), n),
            "hallucination_proxy_chrf": PROXY_CHRF,
            "hallucination_examples": {
                "proxy": [i + 1 for i, f in enumerate(flags) if f][:EXAMPLES],
                "low_chrf_unsure": [i + 1 for i in unsure[:EXAMPLES]]}}


def format_examples(report: Dict[str, object], srcs: Sequence[str], refs: Sequence[str],
                    hyps: Sequence[str], per_token: Sequence[Optional[float]]) -> str:
    """The examples of each kind for a human to read: per kind a heading, then per example
    its line number, source, reference and output (with its sentence chrF and per-token
    log-probability for the proxy)."""
    chrf = sentence_chrf(hyps, refs) if "hallucination_proxy_rate" in report else None
    blocks = [f"# {report['hallucination_method']}"]
    for kind, lines in report["hallucination_examples"].items():
        blocks.append(f"\n## {kind}: {len(lines)} example(s)")
        for i in lines:
            extra = ""
            if chrf is not None:
                p = per_token[i - 1]
                extra = f"  (chrF {chrf[i - 1]:.1f}, log-prob/token {p:.3f})"
            blocks.append(f"\nline {i}{extra}\n  source:    {srcs[i - 1]}\n"
                          f"  reference: {refs[i - 1]}\n  output:    {hyps[i - 1]}")
    return "\n".join(blocks) + "\n"



def evaluation_report(ev) -> Dict[str, object]:
    """:func:`hallucination_report` of an :class:`~seq2seq.decoding.evaluate.Evaluation`
    decoded with ``log_probs`` (exact when its data is an aligned toy task's)."""
    return hallucination_report(ev.srcs, ev.refs, ev.hyps, ev.per_token,
                                oracle_task(ev.srcs, ev.refs))


def evaluation_flagged(ev) -> List[int]:
    """The 0-based indices of the outputs of ``ev`` (as :func:`evaluation_report` takes it)
    that its rate counts: exact on an aligned toy task, else the proxy's flags."""
    task = oracle_task(ev.srcs, ev.refs)
    if task is not None:
        return [i for i, (s, h) in enumerate(zip(ev.srcs, ev.hyps)) if toy_kinds(task, s, h)]
    flags = proxy_flags(sentence_chrf(ev.hyps, ev.refs), ev.per_token)
    return [i for i, f in enumerate(flags) if f]


def format_report(report: Dict[str, object]) -> str:
    """One line for people: the rate, and the kinds (exact) or the threshold (proxy)."""
    if "hallucination_rate" in report:
        kinds = ", ".join(f"{k} {report[f'hallucination_{k}']:.2f}%" for k in KINDS)
        return (f"hallucination {report['hallucination_rate']:.2f}% ({kinds}; "
                f"{report['hallucination_method']})")
    return (f"hallucination proxy {report['hallucination_proxy_rate']:.2f}% (sentence chrF < "
            f"{report['hallucination_proxy_chrf']:g} and per-token log-probability above the "
            "median: a proxy, not a judgement)")
