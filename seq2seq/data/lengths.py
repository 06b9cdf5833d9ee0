"""Length limits learned from the training data, and what is said when data meets them.

    kept, lengths = filter_training(ids, cfg.data.max_len)   # drops, loudly; learns the limits
    lengths.output_limit.at(src_len)                          # most output pieces for a source
    truncation_warning(n_truncated, n, "validation", limit)   # None, or the one-line warning

Two limits, both in sentencepiece pieces:

- **The training length filter** (``data.max_len``): pairs with more pieces than this on either
  side are dropped before training, with a warning. Unset, it is learned from the data: 8 times
  the median pair length (a pair's length is its longer side) and at least 256 (batches of that
  length stay small), which only drops outliers; if it would drop more than 1% of the pairs,
  the run stops before it starts with a one-line error giving the count, the share and the
  setting to change. A ``data.max_len`` set in the config drops what it drops.
- **The output limit**: search stops a sentence after ``a * source pieces + b`` output pieces
  (EOS included). :func:`fit_output_limit` learns ``a`` and ``b`` from the kept training pairs:
  the line that covers every training target (and its EOS) and is lowest at the mean source
  length, then 10% higher plus 2 pieces. It is printed, stored in the checkpoint
  (``output_limit``) and used by validation, ``translate`` and ``evaluate`` unless
  ``decode.max_len_a``/``decode.max_len_b`` (or ``--max-len-a``/``--max-len-b``) are set.

An output that reaches the limit without EOS was cut short: when more than 1% of validation or
test outputs are, :func:`truncation_warning` says so, with the setting to raise.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Dict, NamedTuple, Optional, Sequence, Tuple

from seq2seq.errors import UserError

from .batching import IdPairs

if TYPE_CHECKING:
    from torch import Tensor

TOO_MANY = 0.01  # a share of pairs dropped (stop) or outputs cut short (warn) that is too many
MAX_LEN_TIMES_MEDIAN = 8  # the learned data.max_len: this many times the median pair length ...
MAX_LEN_AT_LEAST = 256  # ... and at least this many pieces
_LEARNED = f"{MAX_LEN_TIMES_MEDIAN} x the median pair length, at least {MAX_LEN_AT_LEAST}"
OUTPUT_MARGIN = (1.1, 2)  # the learned output limit: (factor, pieces) over the tightest line


class OutputLimit(NamedTuple):
    """An output stops after ``int(a * source pieces + b)`` pieces (at least 1), EOS included."""

    a: float
    b: int

    def at(self, src_len: int) -> int:
        """The limit for a source of ``src_len`` pieces (what :func:`output_lengths` computes)."""
        return max(1, int(self.a * max(1, src_len) + self.b))

    def describe(self) -> str:
        return f"{self.a:g} * source pieces + {self.b}"


FALLBACK = OutputLimit(1.5, 10)  # a model with no learned limit (a checkpoint from before them)


def output_lengths(src_len: Tensor, a: float, b: float) -> Tensor:
    """Per sentence, the most output pieces: ``src_len (B,)`` -> ``(B,)``, as :meth:`OutputLimit.at`
    (in float64, so that both give the same numbers)."""
    return (a * src_len.double() + b).long().clamp(min=1)  # (B,)


def resolve(opts, learned: Optional[OutputLimit] = None) -> OutputLimit:
    """The output limit a :class:`seq2seq.config.DecodeConfig` asks for: its ``max_len_a`` and
    ``max_len_b`` where set, the ``learned`` limit (else :data:`FALLBACK`) where None."""
    base = learned or FALLBACK
    return OutputLimit(base.a if opts.max_len_a is None else opts.max_len_a,
                       base.b if opts.max_len_b is None else opts.max_len_b)


def fit_output_limit(src_lens: Sequence[int], tgt_lens: Sequence[int]) -> OutputLimit:
    """The output limit learned from training pairs (see the module docstring): every target
    with its EOS fits, ``OutputLimit.at(s) >= t + 1`` for each pair ``(s, t)``."""
    need: Dict[int, int] = {}  # source length -> the most output steps its targets need
    for s, t in zip(src_lens, tgt_lens):
        s = max(1, s)
        need[s] = max(need.get(s, 0), t + 1)
    if not need:
        return FALLBACK
    frontier, most = [], 0  # only pairs that need more than every shorter source constrain a
    for s in sorted(need):
        if need[s] > most:
            frontier.append((s, need[s]))
            most = need[s]
    mean_src = sum(max(1, s) for s in src_lens) / len(src_lens)
    best = (math.inf, 0.0, 0)
    for b in range(most + 1):
        a = max(max(0.0, (t - b) / s) for s, t in frontier)
        if a * mean_src + b < best[0]:
            best = (a * mean_src + b, a, b)
    _, a, b = best
    factor, extra = OUTPUT_MARGIN
    limit = OutputLimit(_round_up(100 * factor * a) / 100, _round_up(factor * b) + extra)
    while any(limit.at(s) < t for s, t in frontier):  # never for rounding: checked all the same
        limit = OutputLimit(limit.a, limit.b + 1)
    return limit


def _round_up(x: float) -> int:
    """The next integer, ignoring float dust (``100 * 1.1`` is ``110.00000000000001``)."""
    return math.ceil(round(x, 6))


class TrainingLengths(NamedTuple):
    """What :func:`filter_training` did, and the output limit it learned."""

    max_len: int  # the length filter applied (pieces)
    learned: bool  # True: max_len was learned from the data (data.max_len unset)
    total: int  # training pairs read
    empty: int  # dropped: a side is empty
    long: int  # dropped: a side is longer than max_len
    longest: int  # pieces of the longest pair read
    output_limit: OutputLimit  # learned on the kept pairs

    def describe(self) -> str:
        """One line for the run's log."""
        return (f"lengths: training pairs up to {self.max_len} pieces ({self._how()}; the "
                f"longest pair has {self.longest}); output limit "
                f"{self.output_limit.describe()}, learned from the training pairs "
                "(decode.max_len_a/max_len_b override it)")

    def warning(self) -> Optional[str]:
        """The warning for pairs dropped for length (None: none was)."""
        if not self.long:
            return None
        return (f"warning: {self.long} of {self.total} training pairs "
                f"({100 * self.long / self.total:.2f}%) are dropped: longer than {self.max_len} "
                f"pieces ({self._how()}; the longest has {self.longest})")

    def _how(self) -> str:
        return f"learned: {_LEARNED}" if self.learned else "data.max_len"


def filter_training(data: IdPairs, max_len: Optional[int]) -> Tuple[IdPairs, TrainingLengths]:
    """Drop empty pairs and pairs longer than ``max_len`` (None: learned from the data), and
    learn the output limit on the rest. Raises a one-line :class:`UserError` when a learned
    ``max_len`` would drop more than 1% of the pairs, or when no pair is left."""
    sizes = [max(len(s), len(t)) for s, t in zip(data.src, data.tgt)]
    full = [i for i in range(len(sizes)) if data.src[i] and data.tgt[i]]
    longest = max(sizes, default=0)
    learned = max_len is None
    if learned:
        median = statistics.median_low([sizes[i] for i in full] or [1])
        max_len = max(MAX_LEN_TIMES_MEDIAN * median, MAX_LEN_AT_LEAST)
    keep = [i for i in full if sizes[i] <= max_len]
    long, total = len(full) - len(keep), len(sizes)
    if learned and long > TOO_MANY * total:
        raise UserError(f"{long} of {total} training pairs ({100 * long / total:.1f}%) are "
                        f"longer than {max_len} pieces, the limit learned from the data "
                        f"({_LEARNED}): set data.max_len={longest} to keep every pair, "
                        "or a lower data.max_len to drop the longer ones")
    if not keep:
        raise UserError(f"no training pair is left after the length filter (data.max_len="
                        f"{max_len}: {long} longer, {total - len(full)} empty)")
    kept = IdPairs(*([x[i] for i in keep] for x in data))
    limit = fit_output_limit([len(s) for s in kept.src], [len(t) for t in kept.tgt])
    return kept, TrainingLengths(max_len, learned, total, total - len(full), long, longest,
                                 limit)


def count_truncated(src_lens: Sequence[int], out_lens: Sequence[int], limit: OutputLimit) -> int:
    """Outputs (``out_lens`` pieces, without EOS) that stopped at the limit instead of at EOS:
    search gives ``limit.at(s)`` pieces only then, one fewer at most when EOS came in time."""
    return sum(o >= limit.at(s) for s, o in zip(src_lens, out_lens))


def truncation_warning(truncated: int, total: int, what: str, limit: OutputLimit
                       ) -> Optional[str]:
    """One line when more than 1% of ``total`` outputs stopped at the output limit, else None."""
    if not total or truncated <= TOO_MANY * total:
        return None
    return (f"warning: {truncated} of {total} {what} outputs ({100 * truncated / total:.1f}%) "
            f"stopped at the output length limit ({limit.describe()}) instead of at "
            "end-of-sentence: cut short, or the model repeats itself; if the targets are "
            "longer, raise decode.max_len_a or decode.max_len_b (translate and evaluate: "
            "--max-len-a, --max-len-b)")
