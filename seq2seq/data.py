"""Data: Hugging Face ``datasets`` -> sentencepiece ids -> length-bucketed, padded batches.

``load_pairs`` reads a split as two lists of strings (source, target) from anything
``datasets.load_dataset`` reads (a hub id, ``json``/``csv``/``parquet`` with local
``data_files``), from line-aligned plain-text files (``path: text``), or from a
``datasets.DatasetDict`` built in memory (the toy recipes).
"""

import os
import random
import socket
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import urlparse

import torch
from torch import Tensor

from .errors import UserError
from .tokenizer import BOS, EOS, PAD

Pairs = Tuple[List[str], List[str]]
_LOCAL_BUILDERS = {"json", "csv", "parquet", "arrow", "text", "pandas", "webdataset"}
_LOCAL_HINT = ("To train offline, point the config at local files, e.g. data.path=json with "
               "data.data_files={train: train.jsonl, validation: valid.jsonl, test: test.jsonl}, "
               "or data.path=text with data.data_files={train: [train.de, train.en], ...}.")


# -- reading --------------------------------------------------------------------------------

def read_lines(path: str, errors: str = "strict") -> List[str]:
    """Lines of a UTF-8 text file (no line ends). Bad bytes: a UserError naming file and line."""
    p = Path(path)
    if not p.exists() or p.is_dir():
        raise UserError(f"data file {p} does not exist" if not p.exists() else f"{p} is a folder, not a file")
    raw = p.read_bytes()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for n, b in enumerate(lines, 1):
        try:
            out.append(b.decode("utf-8", errors=errors).rstrip("\r"))
        except UnicodeDecodeError as e:
            raise UserError(f"{p} line {n}: bytes that are not UTF-8 ({e.reason} at byte "
                            f"{e.start}); use --encoding-errors replace to replace them") from None
    return out


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


def _load_text_pairs(data_files, split: str, errors: str) -> Pairs:
    files = (data_files or {}).get(split) if isinstance(data_files, dict) else None
    if files is None:
        raise UserError(f"data.path is text but data.data_files has no {split!r} entry "
                        "([source file, target file])")
    if not isinstance(files, (list, tuple)) or len(files) != 2:
        raise UserError(f"data.data_files.{split} must be [source file, target file], got {files!r}")
    src, tgt = read_lines(files[0], errors), read_lines(files[1], errors)
    if len(src) != len(tgt):
        raise UserError(f"{files[0]} has {len(src)} lines but {files[1]} has {len(tgt)}: "
                        "parallel files must be line-aligned")
    return src, tgt


def load_dataset_dict(dcfg):
    """``datasets.load_dataset`` with the config's path, name and data_files; clear errors."""
    import datasets

    path = dcfg.path
    if path is None:
        raise UserError("no data: set data.path (a hub id such as bentrevett/multi30k, or json/"
                        "csv/text with data.data_files)")
    local = path in _LOCAL_BUILDERS or Path(path).exists()
    if not local and not _hub_reachable():
        raise UserError(f"cannot reach the Hugging Face hub to load {path!r} (offline?). "
                        + _LOCAL_HINT)
    if isinstance(dcfg.data_files, dict):
        for split, files in dcfg.data_files.items():
            for f in files if isinstance(files, (list, tuple)) else [files]:
                if "://" not in str(f) and not any(c in str(f) for c in "*?[") \
                        and not Path(f).exists():
                    raise UserError(f"data file {f} (data.data_files.{split}) does not exist")
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(path, dcfg.name, data_files=dcfg.data_files)
    except (ConnectionError, TimeoutError) as e:
        raise UserError(f"cannot reach the Hugging Face hub to load {path!r}: {e}. "
                        + _LOCAL_HINT) from None
    except FileNotFoundError as e:
        raise UserError(f"data set {path!r} not found: {e}. " + _LOCAL_HINT) from None
    except Exception as e:  # datasets raises many types for bad files; keep it one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot load data set {path!r}: {type(e).__name__}: {msg}") from None


def pairs_from_dataset(ds, src: str, tgt: str, where: str) -> Pairs:
    """Source and target strings of one ``datasets.Dataset`` split.

    ``src``/``tgt`` name two columns, or two keys of a ``translation`` column.
    """
    cols = list(ds.column_names)
    if src in cols and tgt in cols:
        s, t = ds[src], ds[tgt]
    elif "translation" in cols:
        tr = ds["translation"]
        keys = sorted(tr[0].keys()) if len(tr) else []
        for k in (src, tgt):
            if len(tr) and k not in tr[0]:
                raise UserError(f"{where}: the translation column has no key {k!r} "
                                f"(it has: {', '.join(keys)})")
        s, t = [x[src] for x in tr], [x[tgt] for x in tr]
    else:
        missing = [c for c in (src, tgt) if c not in cols]
        raise UserError(f"{where}: no column {missing[0]!r} (columns: {', '.join(cols)}); "
                        "set data.src and data.tgt")
    return ["" if x is None else str(x) for x in s], ["" if x is None else str(x) for x in t]


def load_splits(dcfg, splits: Sequence[str], dataset=None, errors: str = "strict"
                ) -> Dict[str, Pairs]:
    """Read the named splits as (source lines, target lines); ``dataset``: a DatasetDict."""
    if dataset is None and dcfg.path == "text":
        return {s: _load_text_pairs(dcfg.data_files, s, errors) for s in splits}
    dd = dataset if dataset is not None else load_dataset_dict(dcfg)
    out = {}
    for s in splits:
        if s not in dd:
            raise UserError(f"the data set has no split {s!r} (it has: {', '.join(dd.keys())}); "
                            "set data.train_split / valid_split / test_split")
        out[s] = pairs_from_dataset(dd[s], dcfg.src, dcfg.tgt, f"split {s!r}")
    return out


# -- batching -------------------------------------------------------------------------------

class Batch(NamedTuple):
    src: Tensor  # (B, S) source ids, PAD-padded
    src_len: Tensor  # (B,)
    tgt_in: Tensor  # (B, T) BOS + target
    tgt_out: Tensor  # (B, T) target + EOS
    index: Tensor  # (B,) positions of these pairs in the data set

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in self))

    @property
    def n_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum())


def pad(seqs: Sequence[Sequence[int]], value: int = PAD) -> Tensor:
    T = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), max(T, 1)), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            out[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out  # (B, T)


def collate(src: Sequence[Sequence[int]], tgt: Optional[Sequence[Sequence[int]]],
            index: Sequence[int]) -> Batch:
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
