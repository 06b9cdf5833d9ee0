"""Streaming training data, for corpora larger than memory (``data.streaming: true``).

The in-memory path (:class:`seq2seq.train.Data`) holds every training pair as a string and as
ids. Here the training split is read as a stream instead, ``data.chunk_size`` pairs at a time:
each chunk is tokenized, length-filtered, length-bucketed, its batches shuffled, trained on and
dropped, so memory holds one chunk whatever the corpus size. The stream is
``datasets.load_dataset(..., streaming=True)`` (a hub data set, or local json/csv/parquet
files, read row by row), or the two line-aligned files of ``data.path: text``, read line by
line.

What it costs, against the in-memory path:
- the tokenizer learns from the first chunk only (make it representative, or shuffle the
  corpus once on disk);
- batches are bucketed within a chunk, so padding is a little higher for small chunks;
- the number of batches per epoch is not known in advance: ``train.max_steps`` is required;
- ``--resume`` reads (and tokenizes) the stream again up to where the run stopped.
The validation split is read whole: keep it small.
"""

from itertools import islice, zip_longest
from typing import Iterator, List, Optional, Tuple

from . import distributed
from .data import (Batch, IdPairs, Pairs, bucket_batches, decode_line, encode_pairs,
                   filter_length, iterate, load_dataset_dict, load_splits, text_files)
from .errors import UserError
from .tokenizer import Tokenizer


def stream_pairs(dcfg, split: str, dataset=None, errors: str = "strict"
                 ) -> Iterator[Tuple[str, str]]:
    """(source, target) strings of a split, read lazily; ``dataset``: a (Iterable)DatasetDict."""
    if dataset is None and dcfg.path == "text":
        yield from _text_pairs(*text_files(dcfg.data_files, split), errors)
        return
    dd = dataset if dataset is not None else load_dataset_dict(dcfg, streaming=True)
    if split not in dd:
        raise UserError(f"the data set has no split {split!r} (it has: {', '.join(dd.keys())}); "
                        "set data.train_split / valid_split")
    ds = dd[split]
    if hasattr(ds, "to_iterable_dataset"):  # an in-memory Dataset
        ds = ds.to_iterable_dataset()
    rows = iter(ds)
    n = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise UserError(f"split {split!r} row {n + 1}: bytes that are not UTF-8") from None
        except Exception as e:  # the readers raise many types for bad files; one line
            raise UserError(f"cannot read split {split!r} of {dcfg.path!r} after {n} rows: "
                            f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                            ) from None
        n += 1
        yield _row_pair(row, dcfg.src, dcfg.tgt, split)


def _row_pair(row, src: str, tgt: str, split: str) -> Tuple[str, str]:
    if src in row and tgt in row:
        a, b = row[src], row[tgt]
    elif isinstance(row.get("translation"), dict):
        t = row["translation"]
        missing = [k for k in (src, tgt) if k not in t]
        if missing:
            raise UserError(f"split {split!r}: the translation column has no key {missing[0]!r} "
                            f"(it has: {', '.join(t)}); set data.src and data.tgt")
        a, b = t[src], t[tgt]
    else:
        missing = [c for c in (src, tgt) if c not in row]
        raise UserError(f"split {split!r}: no column {missing[0]!r} (columns: "
                        f"{', '.join(row)}); set data.src and data.tgt")
    return ("" if a is None else str(a)), ("" if b is None else str(b))


def _text_pairs(src_file: str, tgt_file: str, errors: str) -> Iterator[Tuple[str, str]]:
    for f in (src_file, tgt_file):
        try:
            open(f, "rb").close()
        except OSError as e:
            raise UserError(f"cannot read data file {f}: {e.strerror}") from None
    with open(src_file, "rb") as fs, open(tgt_file, "rb") as ft:
        for n, (a, b) in enumerate(zip_longest(fs, ft), 1):
            if a is None or b is None:
                short, long_ = (src_file, tgt_file) if a is None else (tgt_file, src_file)
                raise UserError(f"{short} has {n - 1} lines but {long_} has more: parallel files "
                                "must be line-aligned")
            yield decode_line(a, src_file, n, errors), decode_line(b, tgt_file, n, errors)


def chunks(pairs: Iterator[Tuple[str, str]], size: int) -> Iterator[Pairs]:
    """Consecutive chunks of ``size`` pairs (the last may be shorter), as two lists."""
    while True:
        chunk = list(islice(pairs, size))
        if not chunk:
            return
        yield [a for a, _ in chunk], [b for _, b in chunk]


class StreamingData:
    """The training split as a stream of chunks; the validation split and tokenizer in memory.

    Same interface as :class:`seq2seq.train.Data`: ``tokenizer``, ``valid``,
    ``steps_per_epoch`` (None: unknown) and ``epoch``.
    """

    def __init__(self, cfg, tokenizer: Optional[Tokenizer], dataset=None,
                 encoding_errors: str = "strict", log=print) -> None:
        d = cfg.data
        self.cfg, self.dataset, self.errors = cfg, dataset, encoding_errors
        if tokenizer is None:
            first = next(self._chunks(), None)
            if first is None:
                raise UserError(f"the training split {d.train_split!r} is empty")
            tokenizer = Tokenizer.train(*first, cfg.tokenizer)
        self.tokenizer = tokenizer
        self.valid: Optional[IdPairs] = None
        if d.valid_split:  # read whole, as load_splits reads any split of a streamed config
            pairs = load_splits(d, [d.valid_split], dataset, encoding_errors)[d.valid_split]
            if not pairs[0]:
                raise UserError(f"the validation split {d.valid_split!r} is empty")
            self.valid = encode_pairs(tokenizer, pairs)
        log(f"data: streaming the training split in chunks of {d.chunk_size} pairs "
            f"(data.chunk_size); {len(self.valid.src) if self.valid else 0} validation pairs; "
            f"vocab {tokenizer.src_vocab_size}/{tokenizer.tgt_vocab_size}")

    def _chunks(self) -> Iterator[Pairs]:
        d = self.cfg.data
        return chunks(stream_pairs(d, d.train_split, self.dataset, self.errors), d.chunk_size)

    def steps_per_epoch(self, cfg, d: distributed.Dist = distributed.Dist()) -> Optional[int]:
        return None

    def epoch(self, cfg, epoch: int, d: distributed.Dist = distributed.Dist(), start: int = 0
              ) -> Iterator[Batch]:
        """This epoch's batches (this rank's shards when distributed) from batch ``start``."""
        t, done, empty = cfg.train, 0, True
        for k, chunk in enumerate(self._chunks()):
            data, _ = filter_length(encode_pairs(self.tokenizer, chunk), cfg.data.max_len)
            if not data.src:
                continue
            empty = False
            batches: List[List[int]] = distributed.shard(bucket_batches(
                [len(s) for s in data.src], [len(s) for s in data.tgt], t.batch_size * d.world,
                t.batch_tokens and t.batch_tokens * d.world,
                seed=(t.seed * 100003 + epoch) * 1000003 + k), d)
            skip = min(len(batches), max(0, start - done))
            done += len(batches)
            yield from iterate(data, batches[skip:])
        if empty and start == 0:
            raise UserError(f"no training pair is left after the length filter "
                            f"(data.max_len={cfg.data.max_len})")
