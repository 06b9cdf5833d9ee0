"""Splits of the toy tasks that leave headroom: split by output length, not at random.

    from seq2seq.data.toy_headroom import all_commands, length_split
    examples = all_commands(command_phrases())      # the whole grammar: 20,910 (src, tgt)
    dd = length_split(examples, max_train_len=22, valid_size=500, seed=1)

As in SCAN's length split (Lake and Baroni, 2018): training and validation hold every example
whose output has at most ``max_train_len`` symbols, test every longer one, so the test split
asks for outputs longer than any seen in training. ``seq2seq.data.toy.commands_length`` is
this split of the commands grammar (the task ``commands_length`` of ``recipes/toy.py``).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Dict, List, Sequence, Tuple

if TYPE_CHECKING:
    from datasets import DatasetDict

Example = Tuple[str, str]  # (src, tgt)


def all_commands(phrases: Dict[str, List[str]]) -> List[Example]:
    """Every command of the grammar, sorted by source: each phrase alone, and every ordered
    pair of phrases joined by ``and`` (in order) or ``after`` (the second first); with the
    102 phrases of ``toy.command_phrases``, 102 + 2 * 102 * 102 = 20,910 commands."""
    out = [(p, " ".join(acts)) for p, acts in phrases.items()]
    for first, a in phrases.items():
        for second, b in phrases.items():
            out.append((f"{first} and {second}", " ".join(a + b)))
            out.append((f"{first} after {second}", " ".join(b + a)))
    return sorted(out)


def length_split(examples: Sequence[Example], max_train_len: int, valid_size: int,
                 seed: int) -> DatasetDict:
    """``train``/``validation``/``test`` of ``examples`` by output length (symbols): test every
    example longer than ``max_train_len``, validation ``valid_size`` of the others drawn with
    ``seed``, training the rest. Every example is in exactly one split; the same examples and
    seed give the same splits."""
    from datasets import Dataset, DatasetDict

    examples = sorted(set(examples))  # a fixed order, whatever the caller's
    short = [e for e in examples if len(e[1].split()) <= max_train_len]
    long = [e for e in examples if len(e[1].split()) > max_train_len]
    if not long or len(short) <= valid_size:
        raise ValueError(f"max_train_len={max_train_len} leaves {len(short)} short and "
                         f"{len(long)} long examples; need more than {valid_size} short "
                         "ones and at least one long one")
    random.Random(seed).shuffle(short)
    splits = {"train": short[valid_size:], "validation": short[:valid_size], "test": long}
    return DatasetDict({name: Dataset.from_dict({"src": [s for s, _ in rows],
                                                 "tgt": [t for _, t in rows]})
                        for name, rows in splits.items()})
