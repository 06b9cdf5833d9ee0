"""Data: Hugging Face ``datasets`` -> sentencepiece ids -> length-bucketed, padded batches.

``load_splits`` reads splits as two lists of strings (source, target) from anything
``datasets.load_dataset`` reads (a hub id, ``json``/``csv``/``parquet`` with local
``data_files``), from line-aligned plain-text files (``path: text``), or from a
``datasets.DatasetDict`` built in memory (the toy recipes).

``datasets`` and ``torch`` are imported where they are needed, so that reading text
(``seq2seq evaluate --hyp --ref``) starts in a fraction of a second.
"""

from __future__ import annotations

import os
import random
import re
import socket
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from .errors import UserError
from .tokenizer import BOS, EOS, PAD

if TYPE_CHECKING:
    from torch import Tensor

Pairs = Tuple[List[str], List[str]]
_LOCAL_BUILDERS = {"json", "csv", "parquet", "arrow", "text", "pandas", "webdataset"}
_LOCAL_HINT = ("To train offline, point the config at local files, e.g. data.path=json with "
               "data.data_files={train: train.jsonl, validation: valid.jsonl, test: test.jsonl}, "
               "or data.path=text with data.data_files={train: [train.de, train.en], ...}.")


# -- reading --------------------------------------------------------------------------------

def read_lines(path: str, errors: str = "strict", what: str = "data file") -> List[str]:
    """Lines of a UTF-8 text file (no line ends; ``\r\n`` is read as ``\n``).

    ``errors``: ``strict`` (bytes that are not UTF-8 raise a UserError naming the file and the
    line) or ``replace`` (they become U+FFFD). ``what`` names the file in error messages.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} {p} does not exist")
    if p.is_dir():
        raise UserError(f"{what} {p} is a folder, not a file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {what} {p}: {e.strerror}") from None
    return split_lines(raw, str(p), errors)


def split_lines(raw: bytes, name: str, errors: str = "strict") -> List[str]:
    """UTF-8 ``raw`` bytes as lines; ``name`` (a file, "stdin") is used in error messages."""
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [decode_line(b, name, n, errors) for n, b in enumerate(lines, 1)]


def decode_line(b: bytes, name: str, n: int, errors: str = "strict") -> str:
    """Line ``n`` of ``name`` as text, without its line end."""
    try:
        return b.decode("utf-8", errors=errors).rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise UserError(f"{name} line {n}: bytes that are not UTF-8 ({e.reason} at byte "
                        f"{e.start}); use --encoding-errors replace to replace them") from None


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or \
            os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("0", "", "false"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _first_bad_line(path) -> Optional[int]:
    """Number of the first line of a local file that is not UTF-8 (None: all are)."""
    try:
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    return n
    except OSError:
        pass
    return None


def _split_files(data_files, split: str) -> List[str]:
    files = data_files.get(split) if isinstance(data_files, dict) else data_files
    if files is None:
        return []
    return [str(f) for f in (files if isinstance(files, (list, tuple)) else [files])]


def text_files(data_files, split: str) -> Tuple[str, str]:
    """The (source file, target file) of a split when ``data.path`` is ``text``."""
    files = (data_files or {}).get(split) if isinstance(data_files, dict) else None
    if files is None:
        raise UserError(f"data.path is text but data.data_files has no {split!r} entry "
                        "([source file, target file])")
    if not isinstance(files, (list, tuple)) or len(files) != 2:
        raise UserError(f"data.data_files.{split} must be [source file, target file], got {files!r}")
    return str(files[0]), str(files[1])


def _load_text_pairs(data_files, split: str, errors: str) -> Pairs:
    files = text_files(data_files, split)
    src, tgt = read_lines(files[0], errors), read_lines(files[1], errors)
    if split and not src and not tgt:
        raise UserError(f"the {split!r} split is empty ({files[0]} and {files[1]} have no lines)")
    if len(src) != len(tgt):
        raise UserError(f"{files[0]} has {len(src)} lines but {files[1]} has {len(tgt)}: "
                        "parallel files must be line-aligned")
    return src, tgt


def load_dataset_dict(dcfg, streaming: bool = False):
    """``datasets.load_dataset`` with the config's path, name and data_files; clear errors.
    ``streaming``: an ``IterableDatasetDict`` that reads rows as they are iterated."""
    import datasets

    path = dcfg.path
    if path is None:
        raise UserError("no data: set data.path (a hub id such as bentrevett/multi30k, or json/"
                        "csv/text with data.data_files)")
    local = path in _LOCAL_BUILDERS or Path(path).exists()
    if not local and (path.startswith((".", "/", "~")) or "\\" in path):
        raise UserError(f"data.path {path} does not exist")
    if not local and not _hub_reachable():
        raise UserError(f"cannot reach the Hugging Face hub to load {path!r} (offline?). "
                        + _LOCAL_HINT)
    splits = dcfg.data_files if isinstance(dcfg.data_files, dict) else {"": dcfg.data_files}
    local_files = {}  # split -> files on this machine
    for split, files in splits.items():
        for f in _split_files(splits, split):
            if "://" in f or any(c in f for c in "*?["):
                continue
            where = f" (data.data_files.{split})" if split else ""
            if not Path(f).is_file():
                raise UserError(f"data file {f}{where} "
                                + ("is a folder" if Path(f).is_dir() else "does not exist"))
            local_files.setdefault(split, []).append(f)
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(path, dcfg.name, data_files=dcfg.data_files,
                                     streaming=streaming)
    except (ConnectionError, TimeoutError) as e:
        raise UserError(f"cannot reach the Hugging Face hub to load {path!r}: {_first_line(e)}. "
                        + _LOCAL_HINT) from None
    except FileNotFoundError as e:
        raise UserError(f"data set {path!r} not found: {_first_line(e)}. " + _LOCAL_HINT) from None
    except Exception as e:  # datasets raises many types for bad files; keep it one line
        for split, files in local_files.items():  # the usual suspects, named precisely
            for f in files:
                with open(f, "rb") as fh:
                    blank = not fh.read(1 << 16).strip()
                if blank:
                    raise UserError(f"data file {f} (data.data_files.{split}) is empty") from None
                n = _first_bad_line(f)
                if n is not None:
                    raise UserError(f"{f} line {n}: bytes that are not UTF-8; convert the file "
                                    "to UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
        root = e
        while root.__cause__ is not None or root.__context__ is not None:  # the real reason
            root = root.__cause__ or root.__context__
        msg = _first_line(root) if root is not e else _first_line(e)
        files = ", ".join(f for fs in local_files.values() for f in fs)
        empty = re.search(r'Instruction "([^"]+)" corresponds to no data', msg)
        if empty:
            split = empty.group(1)
            raise UserError(f"the {split!r} split is empty "
                            f"({', '.join(local_files.get(split, [])) or path} has no rows)"
                            ) from None
        raise UserError(f"cannot load data set {path!r}{f' ({files})' if files else ''}: "
                        f"{type(root).__name__}: {msg}") from None


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _strings(ds, column: str, key: Optional[str], errors: str, where: str, files) -> List[str]:
    """A column (or a key of a struct column) as strings; None becomes "".

    Arrow stores whatever bytes a JSON/CSV file held, so text that is not UTF-8 only fails
    here: with ``errors="replace"`` it is decoded with U+FFFD, else a UserError names the
    file and line (or the row).
    """
    try:
        values = ds[column] if key is None else [None if x is None else x.get(key)
                                                 for x in ds[column]]
        return ["" if x is None else str(x) for x in values]
    except UnicodeDecodeError:
        pass
    import pyarrow as pa
    import pyarrow.compute as pc

    col = ds.data.column(column)  # the raw Arrow column, not decoded yet
    if key is not None:
        col = pc.struct_field(col, key)
    raw = pc.cast(col, pa.large_binary()).to_pylist()
    out = []
    for row, b in enumerate(raw):
        try:
            out.append("" if b is None else b.decode("utf-8", errors=errors))
        except UnicodeDecodeError:
            for f in files:
                n = _first_bad_line(f)
                if n is not None:
                    raise UserError(f"{f} line {n}: bytes that are not UTF-8; use "
                                    "--encoding-errors replace to replace them") from None
            raise UserError(f"{where} row {row + 1}: bytes that are not UTF-8 in {column!r}; "
                            "use --encoding-errors replace to replace them") from None
    return out


def pairs_from_dataset(ds, src: str, tgt: str, where: str, errors: str = "strict",
                       files: Sequence[str] = ()) -> Pairs:
    """Source and target strings of one ``datasets.Dataset`` split.

    ``src``/``tgt`` name two columns, or two keys of a ``translation`` column (the WMT/OPUS
    layout: ``{"translation": {"de": ..., "en": ...}}``). ``files``: the local files the split
    was read from, to name the line of a decoding error.
    """
    cols = list(ds.column_names)
    if src in cols and tgt in cols:
        return (_strings(ds, src, None, errors, where, files),
                _strings(ds, tgt, None, errors, where, files))
    if "translation" in cols:
        feature = ds.features["translation"]  # a dict of features, or datasets.Translation
        keys = list(getattr(feature, "languages", None) or
                    (feature.keys() if hasattr(feature, "keys") else []))
        for k in (src, tgt):
            if k not in keys:
                raise UserError(f"{where}: the translation column has no key {k!r} "
                                f"(it has: {', '.join(keys)}); set data.src and data.tgt")
        return (_strings(ds, "translation", src, errors, where, files),
                _strings(ds, "translation", tgt, errors, where, files))
    missing = [c for c in (src, tgt) if c not in cols]
    raise UserError(f"{where}: no column {missing[0]!r} (columns: {', '.join(cols)}); "
                    "set data.src and data.tgt")


def load_splits(dcfg, splits: Sequence[str], dataset=None, errors: str = "strict"
                ) -> Dict[str, Pairs]:
    """Read the named splits as (source lines, target lines); ``dataset``: a DatasetDict."""
    if dataset is None and dcfg.path == "text":
        return {s: _load_text_pairs(dcfg.data_files, s, errors) for s in splits}
    if dataset is None and dcfg.streaming:  # read just these splits, not the large train split
        from .stream import stream_pairs

        out = {}
        for s in splits:
            pairs = list(stream_pairs(dcfg, s, errors=errors))
            out[s] = [a for a, _ in pairs], [b for _, b in pairs]
        return out
    dd = dataset if dataset is not None else load_dataset_dict(dcfg)
    out = {}
    for s in splits:
        if s not in dd:
            raise UserError(f"the data set has no split {s!r} (it has: {', '.join(dd.keys())}); "
                            "set data.train_split / valid_split / test_split")
        files = _split_files(dcfg.data_files, s) if dataset is None else []
        out[s] = pairs_from_dataset(dd[s], dcfg.src, dcfg.tgt, f"split {s!r}", errors,
                                    [f for f in files if Path(f).is_file()])
    return out


# -- batching -------------------------------------------------------------------------------

class Batch(NamedTuple):
    src: Tensor  # (B, S) source ids, PAD-padded
    src_len: Tensor  # (B,)
    tgt_in: Tensor  # (B, T) BOS + target
    tgt_out: Tensor  # (B, T) target + EOS
    index: Tensor  # (B,) positions of these pairs in the data set

    def to(self, device) -> "Batch":
        if str(device).startswith("cuda"):  # pinned host memory: asynchronous copies
            return Batch(*(t.pin_memory().to(device, non_blocking=True) for t in self))
        return Batch(*(t.to(device) for t in self))

    @property
    def n_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum())


def pad(seqs: Sequence[Sequence[int]], value: int = PAD) -> Tensor:
    import torch

    T = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), max(T, 1)), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            out[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out  # (B, T)


def collate(src: Sequence[Sequence[int]], tgt: Optional[Sequence[Sequence[int]]],
            index: Sequence[int]) -> Batch:
    import torch

    src_t = pad(src)  # (B, S)
    src_len = torch.tensor([max(1, len(s)) for s in src], dtype=torch.long)
    if tgt is None:
        tgt_in = tgt_out = torch.zeros(len(src), 1, dtype=torch.long)
    else:
        tgt_in = pad([[BOS] + list(t) for t in tgt])  # (B, T)
        tgt_out = pad([list(t) + [EOS] for t in tgt])  # (B, T)
    return Batch(src_t, src_len, tgt_in, tgt_out, torch.as_tensor(list(index), dtype=torch.long))


def bucket_batches(src_lens: Sequence[int], tgt_lens: Sequence[int], batch_size: int,
                   batch_tokens: Optional[int] = None, seed: Optional[int] = None
                   ) -> List[List[int]]:
    """Group indices of similar length into batches.

    Sorted by (source, target) length, with ties broken at random when ``seed`` is given;
    cut into batches of ``batch_size`` sentences, or of at most ``batch_tokens`` padded tokens
    (``B * max(S, T)``); the batch order is shuffled with ``seed`` (None: kept in length order).
    """
    rng = random.Random(seed)
    order = list(range(len(src_lens)))
    if seed is not None:
        rng.shuffle(order)
    order.sort(key=lambda i: (src_lens[i], tgt_lens[i]))
    batches, cur, longest = [], [], 0
    for i in order:
        L = max(src_lens[i], tgt_lens[i]) + 1
        if cur and ((batch_tokens is None and len(cur) >= batch_size) or
                    (batch_tokens is not None and max(longest, L) * (len(cur) + 1) > batch_tokens)):
            batches.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, L)
    if cur:
        batches.append(cur)
    if seed is not None:
        rng.shuffle(batches)
    return batches


def padding_fraction(lens: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of padded positions in the batches (lengths ``lens``)."""
    real = sum(lens[i] for b in batches for i in b)
    total = sum(len(b) * max(lens[i] for i in b) for b in batches if b)
    return 1.0 - real / max(1, total)


class IdPairs(NamedTuple):
    """A split as ids, with the original strings kept for scoring."""

    src: List[List[int]]
    tgt: List[List[int]]
    src_text: List[str]
    tgt_text: List[str]


def encode_pairs(tok, pairs: Pairs) -> IdPairs:
    src_text, tgt_text = pairs
    return IdPairs(tok.encode_src(src_text), tok.encode_tgt(tgt_text), src_text, tgt_text)


def filter_length(data: IdPairs, max_len: int) -> Tuple[IdPairs, int]:
    """Drop pairs longer than ``max_len`` pieces on either side, and empty ones."""
    keep = [i for i in range(len(data.src))
            if 0 < len(data.src[i]) <= max_len and 0 < len(data.tgt[i]) <= max_len]
    dropped = len(data.src) - len(keep)
    return IdPairs(*([x[i] for i in keep] for x in data)), dropped


def iterate(data: IdPairs, batches: Sequence[Sequence[int]], with_tgt: bool = True
            ) -> Iterator[Batch]:
    for b in batches:
        yield collate([data.src[i] for i in b], [data.tgt[i] for i in b] if with_tgt else None, b)
