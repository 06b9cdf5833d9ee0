"""Checkpoint files: written atomically, loaded with clear errors and without running code,
averaged.

A checkpoint is one ``torch.save`` file holding the model weights, the config, the
sentencepiece models, the output limit learned from the training data (``output_limit``), the
optimizer and its schedule, the step and the RNG states, so that ``translate`` needs nothing
else and ``train --resume`` continues exactly where it stopped.

What a checkpoint holds is tensors and plain data only (dicts, lists, tuples, strings, bytes,
numbers, booleans, None; the sentencepiece models as bytes): :func:`save` refuses anything else,
and :func:`load` reads with ``torch.load(weights_only=True)``, whose unpickler builds nothing
but those. A pickle that carries other objects (a file crafted to run code when opened, or a
checkpoint some other tool wrote with Python objects in it) is refused with one line before
anything in it runs; a file one trusts is rewritten once as plain data by
``seq2seq convert-checkpoint OLD --out NEW --trusted`` (:func:`convert`). Checkpoints written before a
key existed still load: their config gets the old behaviour of new tokenizer keys
(:data:`OLD_TOKENIZER`), and without ``output_limit`` their config's explicit
``decode.max_len_a/b`` apply, as before. :func:`load` is the one function that reads a file.
Where checkpoints go in a run folder: :mod:`seq2seq.training.run_folder`; a checkpoint turned
back into a model: :mod:`seq2seq.load`; the RNG states: :mod:`seq2seq.training.rng`.
"""

import dataclasses
import enum
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, Union

import torch

from seq2seq import __version__
from seq2seq.config import from_dict
from seq2seq.data.readers import absolute_paths, relative_paths
from seq2seq.errors import UserError, first_line

FORMAT = 1  # bump when a checkpoint's layout changes
# tokenizer keys added later whose default is not what older checkpoints were trained with
OLD_TOKENIZER = {"underscore_as_letter": False, "split_by_number": True}


_PLAIN = (str, bytes, int, float, bool, type(None), torch.Tensor, torch.Size)
CONVERT_HINT = "seq2seq convert-checkpoint {path} --out NEW.pt --trusted"


def check_plain(obj: Any, where: str = "checkpoint") -> None:
    """Raise a TypeError naming the key when ``obj`` holds anything but tensors and plain
    data (what ``torch.load(weights_only=True)`` rebuilds without running code)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}")
            check_plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
    elif not (type(obj) in _PLAIN or isinstance(obj, torch.Tensor)):  # exact: no subclass
        raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}: a "
                        "checkpoint holds tensors and plain data only")


def save(payload: Dict[str, Any], path: Union[str, Path]) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``.

    A kill at any moment leaves either the previous file or the new one, never half of one.
    ``payload`` must be tensors and plain data (:func:`check_plain`), so that :func:`load`
    reads it back without unpickling any object.
    """
    check_plain(payload)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": __version__, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def resolve(dir_or_file: Union[str, Path]) -> Path:
    """A run folder means its ``best.pt`` (else ``last.pt``); a file means itself."""
    p = Path(dir_or_file)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        raise UserError(f"{p} holds no checkpoint (best.pt or last.pt)")
    if not p.exists():
        raise UserError(f"checkpoint {p} does not exist")
    return p


def load(dir_or_file: Union[str, Path], map_location="cpu") -> Dict[str, Any]:
    """The checkpoint's dict; a UserError says what is wrong with a file that is not one."""
    path = resolve(dir_or_file)
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as e:
        raise UserError(f"cannot read checkpoint {path}: {e.strerror}") from None
    if size == 0:
        raise UserError(f"checkpoint {path} is empty (0 bytes): truncated when it was written?")
    try:  # torch.load does not check the zip's CRC-32s: flipped bytes would load silently
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise UserError(f"checkpoint {path} is truncated or corrupted ({size} bytes; not a "
                        f"complete zip archive: {first_line(e)})") from None
    if bad is not None:
        raise UserError(f"checkpoint {path} is corrupted ({size} bytes; checksum mismatch in "
                        f"{bad})")
    try:  # weights_only: tensors and plain containers only, no object of the file's choosing
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if found or "Weights only load failed" in str(e):
            what = f" ({found.group(1)})" if found else ""
            raise UserError(f"checkpoint {path} holds Python objects{what}, not only tensors and "
                            "plain data; loading it could run code, so it is refused. If you "
                            "trust the file (an older checkpoint, say), convert it once: "
                            + CONVERT_HINT.format(path=path)) from None
        raise UserError(f"checkpoint {path} is truncated or corrupted ({size} bytes; "
                        f"{type(e).__name__}: {first_line(e)})") from None
    except Exception as e:  # a damaged file can make the unpickler raise almost anything
        raise UserError(f"checkpoint {path} is truncated or corrupted ({size} bytes; "
                        f"{type(e).__name__}: {first_line(e)})") from None
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise UserError(f"{path} is not a seq2seq checkpoint (a torch file without our "
                        "'format' key)")
    if ckpt["format"] != FORMAT:
        raise UserError(f"checkpoint {path} has format {ckpt['format']} (written by seq2seq "
                        f"{ckpt.get('version', '?')}); this is seq2seq {__version__}, which "
                        f"reads format {FORMAT}")
    missing = [k for k in ("model", "config", "tokenizer") if k not in ckpt]
    if missing:
        raise UserError(f"checkpoint {path} lacks {', '.join(missing)}: damaged, or not written "
                        "by seq2seq train")
    return ckpt


def load_resumable(path, model_cfg) -> Dict[str, Any]:
    """A checkpoint to continue training from (``train --resume``): it must hold the training
    state and have been trained with the model settings ``model_cfg``."""
    ckpt = load(path)
    saved = from_dict({"model": ckpt["config"]["model"]}).model
    # model.kernels chooses how fast the same function runs: a run may resume on the others
    if dataclasses.replace(saved, kernels=model_cfg.kernels) != model_cfg:
        raise UserError(f"--resume: the model section of the config differs from the one in "
                        f"{path}; resume with the same model settings")
    if not all(k in ckpt for k in ("optimizer", "train_state", "rng")):
        raise UserError(f"--resume: {path} holds no training state (optimizer, step, RNG; an "
                        "averaged checkpoint?), so it cannot be resumed")
    return ckpt


def config_of(ckpt: Dict[str, Any]) -> Dict[str, Any]:
    """A checkpoint's config as a dict, with :data:`OLD_TOKENIZER` for keys it lacks."""
    cfg = dict(ckpt["config"])
    if isinstance(cfg.get("tokenizer"), dict):
        cfg["tokenizer"] = {**{k: v for k, v in OLD_TOKENIZER.items()
                               if k not in cfg["tokenizer"]}, **cfg["tokenizer"]}
    return cfg


def average(paths, out) -> Dict[str, Any]:
    """Average the model weights of several checkpoints of one run into a new checkpoint.

    Config and tokenizer come from the last one; optimizer and training state are dropped, so
    the result is for translating and scoring, not for ``--resume``.
    """
    if len(paths) < 1:
        raise UserError("average needs at least one checkpoint")
    ckpts = [load(p) for p in paths]
    first = ckpts[-1]

    def weights_config(c: Dict[str, Any]) -> Dict[str, Any]:
        # model.kernels chooses how fast the same function runs, not the weights: a run
        # resumed on the other kernels is still one run (as load_resumable allows)
        return {k: v for k, v in c["config"]["model"].items() if k != "kernels"}

    for p, c in zip(paths, ckpts):
        if weights_config(c) != weights_config(first) or c["tokenizer"] != first["tokenizer"]:
            raise UserError(f"{p} is not from the same run as {paths[-1]} (model config or "
                            "tokenizer differ)")
    avg = {}
    for k, v in first["model"].items():
        if v.is_floating_point():
            avg[k] = sum(c["model"][k].double() for c in ckpts).div(len(ckpts)).to(v.dtype)
        else:
            avg[k] = v
    config, src, dst = first["config"], resolve(paths[-1]).parent.resolve(), Path(out).parent
    if src != dst.resolve():  # data files stored relative to the run folder: to the new one
        data = absolute_paths(from_dict({"data": config["data"]}).data, src)
        config = {**config, "data": dataclasses.asdict(relative_paths(data, dst))}
    payload = {"model": avg, "config": config, "tokenizer": first["tokenizer"],
               "output_limit": first.get("output_limit"),
               "averaged_from": [str(resolve(p)) for p in paths]}
    save(payload, out)
    return payload


def _to_plain(obj: Any, where: str, dropped: list) -> Any:
    """``obj`` as tensors and plain data: dataclasses as dicts, enums as their values, numpy
    arrays as tensors and numpy numbers as Python ones, namespaces as dicts; anything else is
    dropped (its key recorded in ``dropped``)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if type(k) in (str, int):
                out[k] = _to_plain(v, f"{where}[{k!r}]", dropped)
            else:
                dropped.append(f"{where}[{k!r}] (a {type(k).__qualname__} key)")
        return out
    if isinstance(obj, (list, tuple)):
        items = [_to_plain(v, f"{where}[{i}]", dropped) for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, enum.Enum):
        return _to_plain(obj.value, where, dropped)
    if type(obj) in _PLAIN or isinstance(obj, torch.Tensor):
        return obj
    for base in (bool, int, float, str, bytes):  # numpy's float64 and other subclasses
        if isinstance(obj, base):
            return base(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _to_plain(dataclasses.asdict(obj), where, dropped)
    if type(obj).__module__ == "numpy":
        import numpy as np

        if isinstance(obj, np.ndarray):
            return torch.from_numpy(obj.copy())
        if isinstance(obj, np.generic):
            return obj.item()
    if hasattr(obj, "__dict__") and type(obj).__name__ == "Namespace":
        return _to_plain(vars(obj), where, dropped)
    dropped.append(f"{where} ({type(obj).__module__}.{type(obj).__qualname__})")
    return None


def convert(old: Union[str, Path], new: Union[str, Path]) -> list:
    """Rewrite a checkpoint one trusts as tensors and plain data (``seq2seq convert-checkpoint``).

    Reads ``old`` with the full unpickler, which runs whatever code the file carries: only for
    a file whose origin one trusts. Writes ``new`` with :func:`save` and checks that
    :func:`load` reads it; returns what could not be kept (keys and types), which is dropped.
    """
    old, new = resolve(old), Path(new)
    if new.resolve() == old.resolve():
        raise UserError(f"--out {new} is the checkpoint itself: write the converted one "
                        "elsewhere (the original stays as it is)")
    if not new.resolve().parent.is_dir():
        raise UserError(f"cannot write --out {new}: its folder does not exist")
    try:
        ckpt = torch.load(old, map_location="cpu", weights_only=False)
    except Exception as e:
        raise UserError(f"cannot read {old} as a torch file ({type(e).__name__}: "
                        f"{first_line(e)})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise UserError(f"{old} is not a seq2seq checkpoint (no model and config in it)")
    if ckpt.get("format", FORMAT) != FORMAT:
        raise UserError(f"{old} has checkpoint format {ckpt['format']} (written by seq2seq "
                        f"{ckpt.get('version', '?')}); this version reads and converts format "
                        f"{FORMAT} only")
    dropped: list = []
    plain = _to_plain(ckpt, "checkpoint", dropped)
    for key in ("format", "version"):
        plain.pop(key, None)
    save(plain, new)
    load(new)  # it reads back without the full unpickler
    return dropped
