"""The training corpus of a run: one interface, held in memory or streamed.

A :class:`Corpus` gives the training loop everything it reads: the ``tokenizer`` (trained on
the training split unless a resumed run brings its own), the validation split as ids
(``valid``), and each epoch's length-bucketed batches (``epoch``), sharded across the
processes of a distributed run. Two implementations:

- :class:`InMemoryCorpus` (the default) holds every training pair as a string and as ids;
  an epoch is the whole split, bucketed and shuffled with the seed.
- :class:`StreamedCorpus` (``data.streaming: true``, for corpora larger than memory) reads the
  training split as a stream, ``data.chunk_size`` pairs at a time: each chunk is tokenized,
  length-filtered, bucketed, its batches shuffled, trained on and dropped. What it costs: the
  tokenizer, the length filter and the output limit learn from the first chunk only (make it
  representative, or shuffle the corpus once on disk); padding is a little higher for small
  chunks; the number of batches per epoch is not known in advance (``train.max_steps`` is
  required); ``--resume`` reads the stream again up to where the run stopped. Its validation
  split is read whole: keep it small.

Both drop training pairs for length and learn the output limit as :mod:`seq2seq.data.lengths` says
(``lengths``, ``output_limit``), and print what they did.
"""

import time
from itertools import islice
from typing import Callable, Iterator, List, Optional, Tuple

from seq2seq.config import Config
from seq2seq.errors import UserError
from seq2seq.training import distributed

from .batching import (
    Batch,
    IdPairs,
    Pairs,
    bucket_batches,
    encode_pairs,
    filter_length,
    iterate,
    padding_fraction,
)
from .lengths import OutputLimit, TrainingLengths, filter_training, resolve
from .readers import load_splits, stream_pairs
from .tokenizer import Tokenizer

Log = Callable[[str], None]


class Corpus:
    """The interface: ``cfg`` (the run's config), ``tokenizer``, ``valid`` (None without a
    validation split), ``lengths`` (the length filter and the learned output limit),
    :meth:`steps_per_epoch`, :meth:`epoch` and :meth:`describe`. Batches follow ``cfg.train``
    (``batch_size`` or ``batch_tokens``, ``seed``)."""

    cfg: Config
    tokenizer: Tokenizer
    valid: Optional[IdPairs]
    lengths: TrainingLengths

    @property
    def output_limit(self) -> OutputLimit:
        """The output limit learned from the training data."""
        return self.lengths.output_limit

    def steps_per_epoch(self, d: distributed.Dist = distributed.Dist()) -> Optional[int]:
        """Batches per epoch (None: not known in advance)."""
        raise NotImplementedError

    def epoch(self, epoch: int, d: distributed.Dist = distributed.Dist(), start: int = 0
              ) -> Iterator[Batch]:
        """This rank's batches of epoch ``epoch``, from batch ``start`` (where a resumed run
        left off)."""
        raise NotImplementedError

    def describe(self, d: distributed.Dist = distributed.Dist()) -> str:
        """How the epochs are batched, for the run's log."""
        raise NotImplementedError

    def total_steps(self, d: distributed.Dist = distributed.Dist()) -> int:
        """Updates in a run: ``train.max_steps``, or ``train.epochs`` epochs if that is fewer
        (required when the batches per epoch are not known in advance)."""
        t, per_epoch = self.cfg.train, self.steps_per_epoch(d)
        if per_epoch is None:
            if not t.max_steps:
                raise UserError("data.streaming: the number of batches per epoch is not known "
                                "in advance; set train.max_steps")
            return t.max_steps
        return min(t.max_steps or 10**12, t.epochs * per_epoch)


def _shards(data: IdPairs, t, d: distributed.Dist, seed: int) -> List[distributed.Shard]:
    """This rank's shards of the global batches (``batch_size * world`` sentences each)."""
    return distributed.shard(bucket_batches(
        [len(s) for s in data.src], [len(s) for s in data.tgt], t.batch_size * d.world,
        t.batch_tokens and t.batch_tokens * d.world, seed=seed), d)


def _batches(data: IdPairs, shards: List[distributed.Shard]) -> Iterator[Batch]:
    """The batches of ``shards``; a ghost shard's with its targets masked."""
    for s, batch in zip(shards, iterate(data, [s.rows for s in shards])):
        yield batch.masked() if s.ghost else batch


def _epoch_seed(t, epoch: int) -> int:
    return t.seed * 100003 + epoch


def _log_lengths(cfg, lengths: TrainingLengths, log: Log) -> None:
    """The length filter and the output limit, and the warning for dropped pairs."""
    log(lengths.describe())
    dec = cfg.decode
    if dec.max_len_a is not None or dec.max_len_b is not None:
        log(f"lengths: the config sets decode.max_len_a={dec.max_len_a}, decode.max_len_b="
            f"{dec.max_len_b} (None: learned), so validation and decoding stop outputs at "
            f"{resolve(dec, lengths.output_limit).describe()}")
    if lengths.warning():
        log(lengths.warning())


def _valid_ids(cfg, tokenizer: Tokenizer, pairs: Optional[Pairs]) -> Optional[IdPairs]:
    if pairs is None:
        return None
    if not pairs[0]:
        raise UserError(f"the validation split {cfg.data.valid_split!r} is empty")
    return encode_pairs(tokenizer, pairs)


class InMemoryCorpus(Corpus):
    """Every training pair in memory, as strings and ids (see the module docstring)."""

    def __init__(self, cfg, tokenizer: Optional[Tokenizer], dataset=None,
                 errors: str = "strict", log: Log = print) -> None:
        d, self.cfg = cfg.data, cfg
        t0 = time.time()
        splits = load_splits(d, [s for s in (d.train_split, d.valid_split) if s], dataset, errors)
        raw = splits[d.train_split]
        if not raw[0]:
            raise UserError(f"the training split {d.train_split!r} is empty")
        self.tokenizer = tokenizer or Tokenizer.train(*raw, cfg.tokenizer)
        self.train, self.lengths = filter_training(encode_pairs(self.tokenizer, raw), d.max_len)
        self.valid = _valid_ids(cfg, self.tokenizer, splits.get(d.valid_split))
        L = self.lengths
        log(f"data: {len(self.train.src)} training pairs ({L.empty} empty and {L.long} longer "
            f"than {L.max_len} pieces dropped), "
            f"{len(self.valid.src) if self.valid else 0} validation pairs; vocab "
            f"{self.tokenizer.src_vocab_size}/{self.tokenizer.tgt_vocab_size}; "
            f"{time.time() - t0:.1f} s")
        _log_lengths(cfg, L, log)

    def batches(self, epoch: int, d: distributed.Dist = distributed.Dist()
                ) -> List[distributed.Shard]:
        """This epoch's batches as indices into :attr:`train` (this rank's shards)."""
        t = self.cfg.train
        return _shards(self.train, t, d, _epoch_seed(t, epoch))

    def steps_per_epoch(self, d: distributed.Dist = distributed.Dist()) -> Optional[int]:
        return len(self.batches(0, d))

    def epoch(self, epoch: int, d: distributed.Dist = distributed.Dist(), start: int = 0
              ) -> Iterator[Batch]:
        return _batches(self.train, self.batches(epoch, d)[start:])

    def describe(self, d: distributed.Dist = distributed.Dist()) -> str:
        batches = self.batches(0, d)
        pf = padding_fraction([len(s) + 1 for s in self.train.tgt],
                              [b.rows for b in batches if not b.ghost])
        return f"{len(batches)} per epoch, target padding {100 * pf:.1f}%"


def chunks(pairs: Iterator[Tuple[str, str]], size: int) -> Iterator[Pairs]:
    """Consecutive chunks of ``size`` pairs (the last may be shorter), as two lists."""
    while True:
        chunk = list(islice(pairs, size))
        if not chunk:
            return
        yield [a for a, _ in chunk], [b for _, b in chunk]


class StreamedCorpus(Corpus):
    """The training split as a stream of chunks (see the module docstring)."""

    def __init__(self, cfg, tokenizer: Optional[Tokenizer], dataset=None,
                 errors: str = "strict", log: Log = print) -> None:
        d = cfg.data
        self.cfg, self.dataset, self.errors, self.log = cfg, dataset, errors, log
        first = next(self._chunks(), None)
        if first is None:
            raise UserError(f"the training split {d.train_split!r} is empty")
        self.tokenizer = tokenizer = tokenizer or Tokenizer.train(*first, cfg.tokenizer)
        _, self.lengths = filter_training(encode_pairs(tokenizer, first), d.max_len)
        self.valid = _valid_ids(cfg, tokenizer, load_splits(d, [d.valid_split], dataset, errors)
                                [d.valid_split] if d.valid_split else None)
        log(f"data: streaming the training split in chunks of {d.chunk_size} pairs "
            f"(data.chunk_size); {len(self.valid.src) if self.valid else 0} validation pairs; "
            f"vocab {tokenizer.src_vocab_size}/{tokenizer.tgt_vocab_size}; the lengths are "
            "learned from the first chunk")
        _log_lengths(cfg, self.lengths, log)

    def _chunks(self) -> Iterator[Pairs]:
        d = self.cfg.data
        return chunks(stream_pairs(d, d.train_split, self.dataset, self.errors), d.chunk_size)

    def steps_per_epoch(self, d: distributed.Dist = distributed.Dist()) -> Optional[int]:
        return None

    def epoch(self, epoch: int, d: distributed.Dist = distributed.Dist(), start: int = 0
              ) -> Iterator[Batch]:
        done, kept, dropped = 0, 0, 0
        t, max_len = self.cfg.train, self.lengths.max_len
        for k, chunk in enumerate(self._chunks()):
            data, n_dropped = filter_length(encode_pairs(self.tokenizer, chunk), max_len)
            kept, dropped = kept + len(data.src), dropped + n_dropped
            if not data.src:
                continue
            batches = _shards(data, t, d, _epoch_seed(t, epoch) * 1000003 + k)
            skip = min(len(batches), max(0, start - done))
            done += len(batches)
            yield from _batches(data, batches[skip:])
        if not kept and start == 0:
            raise UserError(f"no training pair is left after the length filter "
                            f"(data.max_len={max_len}, {dropped} dropped)")
        self.log(f"data: epoch {epoch + 1} streamed {kept} training pairs ({dropped} dropped: "
                 f"empty or longer than data.max_len={max_len} pieces)")

    def describe(self, d: distributed.Dist = distributed.Dist()) -> str:
        return f"bucketed per chunk of {self.cfg.data.chunk_size} pairs"


def load_corpus(cfg, tokenizer: Optional[Tokenizer] = None, dataset=None,
                errors: str = "strict", log: Log = print,
                d: distributed.Dist = distributed.Dist()) -> Corpus:
    """The run's training corpus: streamed when ``data.streaming``, else in memory.

    ``tokenizer``: use this one (a resumed run's) instead of training one; ``dataset``: a
    ``datasets.DatasetDict`` to read instead of ``cfg.data``; ``errors``: ``strict`` or
    ``replace`` for bytes that are not UTF-8; ``log``: where the one-line summary goes. In a
    distributed run (``d``) rank 0 reads first and every rank uses its tokenizer.
    """
    kind = StreamedCorpus if cfg.data.streaming else InMemoryCorpus
    if d.world == 1:
        return kind(cfg, tokenizer, dataset, errors, log)
    main = []
    state = distributed.on_main(lambda: main.append(kind(cfg, tokenizer, dataset, errors, log))
                                or main[0].tokenizer.state(), d)
    return main[0] if main else kind(cfg, Tokenizer.from_state(state), dataset, errors, log)
