"""Toy translation tasks, generated from a seed as ``datasets.DatasetDict`` objects.

    from seq2seq.toy import dataset, reverse
    dd = dataset("sort", seed=1)            # a task of recipes/toy.py by name
    dd = reverse(seed=1, min_len=3, max_len=8, train_size=2000)   # or with other settings

Every function returns a ``DatasetDict`` with ``train``, ``validation`` and ``test`` splits,
each with the string columns ``src`` and ``tgt``, the layout that :func:`seq2seq.training.recipe.run`
reads from real data (``recipes/toy.py TASK`` trains on it with ``recipes/TASK.yaml``). The same
seed gives the same data on every machine (only ``random.Random`` is used). The splits are
disjoint: no item (a sequence, a date, a number) is in two of them, so the validation and test
scores measure generalization, not memory.

    reverse("c a t")            -> "t a c"           (copy: "c a t")
    sort("37 5 81 5")           -> "5 5 37 81"
    dates("3rd of March 2021")  -> "2021-03-03"      (seven formats, day before month)
    numbers("three hundred and twelve") -> "312"     (and back)
    commands("hop twice and look left") -> "I_HOP I_HOP I_TURN_LEFT I_LOOK"   (up to 48 symbols)

Symbols and numbers are separated by spaces, so that the sentencepiece tokenizer gives one
piece per symbol (and, with ``split_digits``, one per digit).
"""

from __future__ import annotations

import datetime
import random
from collections import defaultdict
from typing import TYPE_CHECKING, Callable, Dict, Hashable, List, Optional, Sequence, Tuple

from seq2seq.data.toy_headroom import all_commands, length_split

if TYPE_CHECKING:  # imported where data is made: the task names are known without it
    from datasets import DatasetDict

Example = Tuple[str, str]  # (src, tgt)
SPLITS = ("train", "validation", "test")


def make_splits(sample: Callable[[random.Random, str], Tuple[Hashable, Example]],
                sizes: Dict[str, int], seed: int) -> DatasetDict:
    """Draw ``sizes[split]`` examples per split with ``sample(rng, split)``, unique across splits.

    ``sample`` returns ``(key, (src, tgt))``; an example whose key was drawn before (in any
    split) is drawn again, so the splits are disjoint on the key.
    """
    from datasets import Dataset, DatasetDict

    rng = random.Random(seed)
    seen = set()
    out = {}
    for split in SPLITS:
        src, tgt = [], []
        tries = 0
        while len(src) < sizes[split]:
            tries += 1
            if tries > 100 * sizes[split] + 1000:
                raise ValueError(f"cannot draw {sizes[split]} distinct {split} examples; "
                                 "ask for fewer or widen the task")
            key, (s, t) = sample(rng, split)
            if key in seen:
                continue
            seen.add(key)
            src.append(s)
            tgt.append(t)
        out[split] = Dataset.from_dict({"src": src, "tgt": tgt})
    return DatasetDict(out)


def _sizes(train: int, valid: int, test: int) -> Dict[str, int]:
    return {"train": train, "validation": valid, "test": test}


# -- reverse and copy -----------------------------------------------------------------------

def symbols(n: int) -> List[str]:
    """The first ``n`` symbols of ``a``..``z``, then ``A``..``Z``."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if not 1 <= n <= len(alphabet):
        raise ValueError(f"the number of symbols must be in 1..{len(alphabet)}, got {n}")
    return list(alphabet[:n])


def reverse(seed: int = 1, task: str = "reverse", vocab: int = 20,
            min_len: int = 3, max_len: int = 15,
            test_min_len: Optional[int] = None, test_max_len: Optional[int] = None,
            train_size: int = 20000, valid_size: int = 500, test_size: int = 1000
            ) -> DatasetDict:
    """Reverse (``task="reverse"``) or copy (``task="copy"``) a sequence of symbols.

    Lengths are uniform in ``[min_len, max_len]`` for train and validation, and in
    ``[test_min_len, test_max_len]`` (default: the same range) for test: a test range above
    ``max_len`` measures generalization to lengths never seen in training.
    """
    if task not in ("reverse", "copy"):
        raise ValueError(f"task must be reverse or copy, got {task!r}")
    alphabet = symbols(vocab)
    lo = min_len if test_min_len is None else test_min_len
    hi = max_len if test_max_len is None else test_max_len

    def sample(rng, split):
        n = rng.randint(lo, hi) if split == "test" else rng.randint(min_len, max_len)
        seq = [rng.choice(alphabet) for _ in range(n)]
        out = seq[::-1] if task == "reverse" else seq
        return tuple(seq), (" ".join(seq), " ".join(out))

    return make_splits(sample, _sizes(train_size, valid_size, test_size), seed)


# -- sort -----------------------------------------------------------------------------------

def sort(seed: int = 1, max_value: int = 99, min_len: int = 2, max_len: int = 10,
         train_size: int = 20000, valid_size: int = 500, test_size: int = 1000) -> DatasetDict:
    """Sort a list of ``min_len``..``max_len`` integers in ``[0, max_value]`` (repeats allowed)."""

    def sample(rng, split):
        xs = [rng.randint(0, max_value) for _ in range(rng.randint(min_len, max_len))]
        return tuple(xs), (" ".join(map(str, xs)), " ".join(map(str, sorted(xs))))

    return make_splits(sample, _sizes(train_size, valid_size, test_size), seed)


# -- dates ----------------------------------------------------------------------------------

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FIRST_DAY = datetime.date(1950, 1, 1)  # two-digit years: 50-99 are 19xx, 00-49 are 20xx
LAST_DAY = datetime.date(2049, 12, 31)


def ordinal(n: int) -> str:
    """1 -> "1st", 2 -> "2nd", 11 -> "11th", 23 -> "23rd"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# Numeric formats put the day first (03/04/21 is 3 April 2021), as in most of the world.
DATE_FORMATS: Dict[str, Callable[[datetime.date], str]] = {
    # 3rd of March 2021
    "ordinal_of": lambda d: f"{ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",
    # March 3, 2021
    "month_day": lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    # 3 March 2021
    "day_month": lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    # Mar 3 2021
    "short_month": lambda d: f"{MONTHS[d.month - 1][:3]} {d.day} {d.year}",
    # Wednesday, 3rd March 2021
    "weekday": lambda d: (f"{WEEKDAYS[d.weekday()]}, {ordinal(d.day)} {MONTHS[d.month - 1]} "
                          f"{d.year}"),
    # 03/03/21
    "dd/mm/yy": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year % 100:02d}",
    # 3.3.2021
    "d.m.yyyy": lambda d: f"{d.day}.{d.month}.{d.year}",
}


def dates(seed: int = 1, formats: Sequence[str] = tuple(DATE_FORMATS),
          train_size: int = 20000, valid_size: int = 500, test_size: int = 1000) -> DatasetDict:
    """A date between 1950 and 2049 written in one of ``formats`` -> ISO 8601 (``2021-03-03``).

    Each date is in at most one split (in one format, drawn at random); the weekday names
    in the ``weekday`` format are the real ones (from ``date.weekday()``, not the locale).
    """
    for f in formats:
        if f not in DATE_FORMATS:
            raise ValueError(f"unknown date format {f!r} (known: {', '.join(DATE_FORMATS)})")
    n_days = (LAST_DAY - FIRST_DAY).days + 1
    formats = list(formats)

    def sample(rng, split):
        d = FIRST_DAY + datetime.timedelta(days=rng.randrange(n_days))
        return d, (DATE_FORMATS[rng.choice(formats)](d), d.isoformat())

    return make_splits(sample, _sizes(train_size, valid_size, test_size), seed)


# -- numbers --------------------------------------------------------------------------------

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_to_words(n: int) -> str:
    """British English with "and": 312 -> "three hundred and twelve", 1012 -> "one thousand
    and twelve", 45 -> "forty-five"; for 0 <= n < 1,000,000."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number_to_words covers 0..999999, got {n}")
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("-" + ONES[n % 10] if n % 10 else "")
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + (" and " + number_to_words(rest) if rest else "")
    rest = n % 1000
    head = number_to_words(n // 1000) + " thousand"
    if not rest:
        return head
    return head + (" and " if rest < 100 else " ") + number_to_words(rest)


def numbers(seed: int = 1, direction: str = "words2digits", max_digits: int = 6,
            train_size: int = 20000, valid_size: int = 500, test_size: int = 1000
            ) -> DatasetDict:
    """English number words <-> digits, for 0 to ``10**max_digits - 1`` (at most 999,999).

    The number of digits is drawn uniformly from 1..``max_digits``, then the number uniformly
    among those with that many digits, so that small numbers are not swamped by large ones.
    There are only 1,000 numbers below 1,000: with the default sizes the training split gets
    all of them (and the validation and test splits none), the rest are 4 to 6 digits long.
    ``direction``: ``words2digits`` ("three hundred and twelve" -> "312") or ``digits2words``.
    Digits are written without separators ("12345"); the tokenizer splits them.
    """
    if direction not in ("words2digits", "digits2words"):
        raise ValueError(f"direction must be words2digits or digits2words, got {direction!r}")
    if not 1 <= max_digits <= 6:
        raise ValueError(f"max_digits must be in 1..6, got {max_digits}")

    def sample(rng, split):
        k = rng.randint(1, max_digits)
        n = rng.randint(0 if k == 1 else 10 ** (k - 1), 10 ** k - 1)
        words, digits = number_to_words(n), str(n)
        return n, ((words, digits) if direction == "words2digits" else (digits, words))

    return make_splits(sample, _sizes(train_size, valid_size, test_size), seed)


# -- commands -------------------------------------------------------------------------------

COMMAND_ACTIONS = {"step": "I_STEP", "hop": "I_HOP", "wave": "I_WAVE", "look": "I_LOOK"}
COMMAND_TURNS = {"left": "I_TURN_LEFT", "right": "I_TURN_RIGHT"}
COMMAND_COUNTS = {"": 1, "twice": 2, "thrice": 3}


def command_phrases() -> Dict[str, List[str]]:
    """Every phrase of the commands grammar -> its action symbols (102 phrases).

    ``ACTION [left|right|around left|opposite left|...] [twice|thrice]``, and ``turn`` with a
    direction (``turn left`` is one turn, ``turn around left`` four, ``turn opposite left`` two):

        hop left            -> I_TURN_LEFT I_HOP
        hop around right    -> (I_TURN_RIGHT I_HOP) x 4
        hop opposite left   -> I_TURN_LEFT I_TURN_LEFT I_HOP
        wave thrice         -> I_WAVE I_WAVE I_WAVE
    """
    phrases = {}
    for verb, act in list(COMMAND_ACTIONS.items()) + [("turn", None)]:
        for way in ["", "left", "right", "around left", "around right", "opposite left",
                    "opposite right"]:
            if verb == "turn" and not way:
                continue
            turn = COMMAND_TURNS[way.split()[-1]] if way else None
            do = [act] if act else []
            if not way:
                once = do
            elif way.startswith("around"):
                once = ([turn] + do) * 4
            elif way.startswith("opposite"):
                once = [turn, turn] + do
            else:
                once = [turn] + do
            for count, n in COMMAND_COUNTS.items():
                words = " ".join(w for w in (verb, way, count) if w)
                phrases[words] = once * n
    return phrases


def commands(seed: int = 1, train_size: int = 16000, valid_size: int = 500,
             test_size: int = 1000) -> DatasetDict:
    """Commands to action symbols, from a small grammar with long outputs (1-9 words -> 1-48
    symbols): one phrase of :func:`command_phrases`, or two joined by ``and`` (in order) or
    ``after`` (the second first):

        hop twice and look left        -> I_HOP I_HOP I_TURN_LEFT I_LOOK
        wave after turn opposite right -> I_TURN_RIGHT I_TURN_RIGHT I_WAVE

    The grammar is SCAN's (Lake and Baroni, 2018) with other words; its 20,910 commands are
    split at random (every one-phrase command falls in training, as the sizes make it likely).
    The symbols join capitals with underscores: the default tokenizer keeps each one piece.
    """
    phrases = command_phrases()
    names = sorted(phrases)

    def sample(rng, split):
        first = rng.choice(names)
        if rng.random() < 0.02:
            return first, (first, " ".join(phrases[first]))
        second, joint = rng.choice(names), rng.choice(["and", "after"])
        src = f"{first} {joint} {second}"
        out = phrases[first] + phrases[second] if joint == "and" else \
            phrases[second] + phrases[first]
        return src, (src, " ".join(out))

    return make_splits(sample, _sizes(train_size, valid_size, test_size), seed)


def commands_length(seed: int = 1, max_train_actions: int = 22, valid_size: int = 500
                    ) -> DatasetDict:
    """The whole commands grammar split by output length, as SCAN's length split: training
    and validation hold every command of at most ``max_train_actions`` symbols (validation
    ``valid_size`` of them, drawn with ``seed``), test every longer one (24-48 symbols: no
    command has 23). Not position-aligned: no exact oracle in ``compare/oracle.py``."""
    return length_split(all_commands(command_phrases()), max_train_actions, valid_size, seed)


# -- the tasks of recipes/toy.py ------------------------------------------------------------

LENGTH_GENERALIZATION = {"train": (3, 12), "test": (13, 20)}  # symbols: min, max


def _length_generalization(seed: int) -> DatasetDict:
    """Reverse, tested on sequences longer than any in training (see LENGTH_GENERALIZATION)."""
    (lo, hi), (test_lo, test_hi) = LENGTH_GENERALIZATION["train"], LENGTH_GENERALIZATION["test"]
    return reverse(seed=seed, min_len=lo, max_len=hi, test_min_len=test_lo, test_max_len=test_hi)


#: reverse_small: reverse of longer sequences, trained with a small model
#: (recipes/reverse_small.yaml), so that full teacher forcing ends well below 100% exact match
REVERSE_SMALL = {"min_len": 5, "max_len": 25}  # symbols: min, max, in every split


#: task name -> (generator of its data from a seed, the recipe config it trains with)
TASKS: Dict[str, Tuple[Callable[[int], DatasetDict], str]] = {
    "reverse": (lambda seed: reverse(seed=seed), "reverse.yaml"),
    "copy": (lambda seed: reverse(seed=seed, task="copy"), "reverse.yaml"),
    "sort": (lambda seed: sort(seed=seed), "sort.yaml"),
    "dates": (lambda seed: dates(seed=seed), "dates.yaml"),
    "number_words": (lambda seed: numbers(seed=seed), "number_words.yaml"),
    "digits2words": (lambda seed: numbers(seed=seed, direction="digits2words"),
                     "number_words.yaml"),
    "length_generalization": (_length_generalization, "length_generalization.yaml"),
    "commands": (lambda seed: commands(seed=seed), "commands.yaml"),
    "commands_length": (lambda seed: commands_length(seed=seed), "commands_length.yaml"),
    "reverse_small": (lambda seed: reverse(seed=seed, **REVERSE_SMALL), "reverse_small.yaml"),
}


def dataset(task: str, seed: int = 1) -> DatasetDict:
    """The data of toy task ``task`` (a key of :data:`TASKS`) generated with ``seed``."""
    if task not in TASKS:
        raise ValueError(f"unknown toy task {task!r} (known: {', '.join(TASKS)})")
    return TASKS[task][0](seed)


def by_length(srcs: Sequence[str], hyps: Sequence[str], refs: Sequence[str]) -> Dict[int, dict]:
    """Per source length (symbols): the number of sentences, the exact match (percent) and the
    mean output length (symbols), as ``{length: {"n", "exact_match", "output_length"}}``."""
    groups = defaultdict(list)
    for s, h, r in zip(srcs, hyps, refs):
        groups[len(s.split())].append((h.strip() == r.strip(), len(h.split())))
    return {n: {"n": len(g), "exact_match": round(100.0 * sum(e for e, _ in g) / len(g), 1),
                "output_length": round(sum(l for _, l in g) / len(g), 1)}
            for n, g in sorted(groups.items())}
