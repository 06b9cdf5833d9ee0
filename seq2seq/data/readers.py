"""Readers: parallel text as (source, target) strings, from wherever a config points.

``load_splits`` reads whole splits as two lists of strings, ``stream_pairs`` reads one split
lazily, pair by pair (``data.streaming``), both from anything ``datasets.load_dataset`` reads
(a hub id, ``json``/``csv``/``parquet`` with local ``data_files``), from two line-aligned
plain-text files (``path: text``), or from a ``datasets.DatasetDict`` built in memory (the toy
tasks). Source and target are two columns, or two keys of a ``translation`` column (the
WMT/OPUS layout); :func:`column_layout` decides which for both readers.

``datasets`` is imported where it is needed, so that reading text (``seq2seq evaluate --hyp
--ref``) starts in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from itertools import zip_longest
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import urlparse

from seq2seq.errors import UserError, first_line

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
    _check_file(path, what)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror}") from None
    return split_lines(raw, str(path), errors)


def add_extra_test_option(p, scored: str) -> None:
    """``--extra-test NAME=SRC,REF`` (repeatable) on the argparse parser ``p``, for sets that
    are ``scored`` as the help says; :func:`read_test_set` reads each value."""
    p.add_argument("--extra-test", action="append", default=[], metavar="NAME=SRC,REF",
                   help=f"another test set, {scored} (repeatable). Example: --extra-test "
                        "flickr2017=test_2017_flickr.de,test_2017_flickr.en")


def read_test_set(text: str, option: str = "--extra-test") -> Tuple[str, List[str], List[str]]:
    """``NAME=SRC_FILE,REF_FILE`` (the value of ``option``) -> (name, sources, references)."""
    name, _, files = text.partition("=")
    parts = files.split(",")
    if not name.strip() or len(parts) != 2 or not all(p.strip() for p in parts):
        raise UserError(f"{option} {text!r}: expected NAME=SRC_FILE,REF_FILE")
    srcs = read_lines(parts[0].strip(), what=f"{option} source file")
    refs = read_lines(parts[1].strip(), what=f"{option} reference file")
    if len(srcs) != len(refs) or not srcs:
        raise UserError(f"{option} {name}: {parts[0]} has {len(srcs)} lines and {parts[1]} "
                        f"has {len(refs)}: they must be line-aligned and not empty")
    return name.strip(), srcs, refs


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


def absolute_paths(dcfg, root=None):
    """``dcfg`` (a ``DataConfig``) with its local files as absolute paths: ``data.path`` when it
    names a local file or folder, and every ``data.data_files`` entry that names a local file.

    Relative paths are read from the folder ``root``: the current folder by default (a user's
    YAML, ``--set``), a run folder for its checkpoints' configs (:func:`relative_paths`). Other
    names (hub ids, builders such as ``json``, patterns, URLs) are left as they are."""
    base = Path(root) if root is not None else Path()
    return _local_files(dcfg, lambda f: str((base / f).resolve()) if (base / f).exists() else f)


def relative_paths(dcfg, root):
    """``dcfg`` with the local files under the folder ``root`` relative to it (``/``-separated),
    the others absolute: what a run's checkpoints store (``root``: the run folder), so that a
    run folder that holds its data finds it when moved (read back by :func:`absolute_paths`)."""
    root = Path(root).resolve()

    def fix(f: str) -> str:
        p = Path(f).resolve()
        if not p.exists():
            return f
        return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)

    return _local_files(dcfg, fix)


def _local_files(dcfg, fix: Callable[[str], str]):
    """``dcfg`` with ``fix`` applied to ``data.path`` (unless a builder's name) and to every
    name in ``data.data_files`` (URLs excepted)."""
    def each(f):
        if isinstance(f, dict):
            return {k: each(v) for k, v in f.items()}
        if isinstance(f, (list, tuple)):
            return [each(x) for x in f]
        return fix(f) if isinstance(f, str) and f and "://" not in f else f

    path = dcfg.path
    path = fix(path) if path and path not in _LOCAL_BUILDERS and "://" not in path else path
    return dataclasses.replace(dcfg, path=path, data_files=each(dcfg.data_files))


def text_files(data_files, split: str) -> Tuple[str, str]:
    """The (source file, target file) of a split when ``data.path`` is ``text``."""
    files = (data_files or {}).get(split) if isinstance(data_files, dict) else None
    if files is None:
        raise UserError(f"data.path is text but data.data_files has no {split!r} entry "
                        "([source file, target file])")
    if not isinstance(files, (list, tuple)) or len(files) != 2:
        raise UserError(f"data.data_files.{split} must be [source file, target file], got {files!r}")
    return str(files[0]), str(files[1])


def _check_file(path: str, what: str = "data file") -> None:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} {p} does not exist")
    if p.is_dir():
        raise UserError(f"{what} {p} is a folder, not a file")
    try:
        open(p, "rb").close()
    except OSError as e:
        raise UserError(f"cannot read {what} {p}: {e.strerror}") from None


def text_pairs(src_file: str, tgt_file: str, errors: str = "strict"
               ) -> Iterator[Tuple[str, str]]:
    """(source, target) lines of two line-aligned UTF-8 files, read lazily; a UserError when
    one file has more lines than the other (after reading both to the end to count them)."""
    for f in (src_file, tgt_file):
        _check_file(f)
    with open(src_file, "rb") as fs, open(tgt_file, "rb") as ft:
        for n, (a, b) in enumerate(zip_longest(fs, ft), 1):
            if a is None or b is None:
                rest = 1 + sum(1 for _ in (ft if a is None else fs))
                n_src, n_tgt = (n - 1, n - 1 + rest) if a is None else (n - 1 + rest, n - 1)
                raise UserError(f"{src_file} has {n_src} lines but {tgt_file} has {n_tgt}: "
                                "parallel files must be line-aligned")
            yield decode_line(a, src_file, n, errors), decode_line(b, tgt_file, n, errors)


def _load_text_pairs(data_files, split: str, errors: str) -> Pairs:
    files = text_files(data_files, split)
    pairs = list(text_pairs(*files, errors))
    if split and not pairs:
        raise UserError(f"the {split!r} split is empty ({files[0]} and {files[1]} have no lines)")
    return [a for a, _ in pairs], [b for _, b in pairs]


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
        raise UserError(f"cannot reach the Hugging Face hub to load {path!r}: {first_line(e)}. "
                        + _LOCAL_HINT) from None
    except FileNotFoundError as e:
        raise UserError(f"data set {path!r} not found: {first_line(e)}. " + _LOCAL_HINT) from None
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
        msg = first_line(root) if root is not e else first_line(e)
        files = ", ".join(f for fs in local_files.values() for f in fs)
        empty = re.search(r'Instruction "([^"]+)" corresponds to no data', msg)
        if empty:
            split = empty.group(1)
            raise UserError(f"the {split!r} split is empty "
                            f"({', '.join(local_files.get(split, [])) or path} has no rows)"
                            ) from None
        raise UserError(f"cannot load data set {path!r}{f' ({files})' if files else ''}: "
                        f"{type(root).__name__}: {msg}") from None


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


def column_layout(columns: Sequence[str], src: str, tgt: str, where: str,
                  translation_keys: Callable[[], Sequence[str]]) -> bool:
    """Whether ``src``/``tgt`` are two keys of a ``translation`` column (True) or two columns
    (False); a UserError naming what is there when neither. ``translation_keys()``: the keys
    of the translation column, asked only when there is one."""
    if src in columns and tgt in columns:
        return False
    if "translation" in columns:
        keys = list(translation_keys())
        for k in (src, tgt):
            if k not in keys:
                raise UserError(f"{where}: the translation column has no key {k!r} "
                                f"(it has: {', '.join(keys)}); set data.src and data.tgt")
        return True
    missing = [c for c in (src, tgt) if c not in columns]
    raise UserError(f"{where}: no column {missing[0]!r} (columns: {', '.join(columns)}); "
                    "set data.src and data.tgt")


def pairs_from_dataset(ds, src: str, tgt: str, where: str, errors: str = "strict",
                       files: Sequence[str] = ()) -> Pairs:
    """Source and target strings of one ``datasets.Dataset`` split (see :func:`column_layout`).
    ``files``: the local files the split was read from, to name the line of a decoding error."""
    def translation_keys():
        feature = ds.features["translation"]  # a dict of features, or datasets.Translation
        return (getattr(feature, "languages", None) or
                (feature.keys() if hasattr(feature, "keys") else []))

    if column_layout(list(ds.column_names), src, tgt, where, translation_keys):
        return (_strings(ds, "translation", src, errors, where, files),
                _strings(ds, "translation", tgt, errors, where, files))
    return (_strings(ds, src, None, errors, where, files),
            _strings(ds, tgt, None, errors, where, files))


def row_pair(row: dict, src: str, tgt: str, where: str) -> Tuple[str, str]:
    """Source and target strings of one row of a streamed split (see :func:`column_layout`)."""
    if column_layout(list(row), src, tgt, where, lambda: list(row["translation"] or {})):
        row = row["translation"]
    a, b = row[src], row[tgt]
    return ("" if a is None else str(a)), ("" if b is None else str(b))


def load_splits(dcfg, splits: Sequence[str], dataset=None, errors: str = "strict"
                ) -> Dict[str, Pairs]:
    """Read the named splits as (source lines, target lines); ``dataset``: a DatasetDict."""
    if dataset is None and dcfg.path == "text":
        return {s: _load_text_pairs(dcfg.data_files, s, errors) for s in splits}
    if dataset is None and dcfg.streaming:  # read just these splits, not the large train split
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


def stream_pairs(dcfg, split: str, dataset=None, errors: str = "strict"
                 ) -> Iterator[Tuple[str, str]]:
    """(source, target) strings of a split, read lazily; ``dataset``: a (Iterable)DatasetDict."""
    if dataset is None and dcfg.path == "text":
        yield from text_pairs(*text_files(dcfg.data_files, split), errors)
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
                            f"{type(e).__name__}: {first_line(e)}") from None
        n += 1
        yield row_pair(row, dcfg.src, dcfg.tgt, f"split {split!r}")
