"""Checkpoints: written atomically, loaded with clear errors, turned back into a model.

A checkpoint is one ``torch.save`` file holding the model weights, the config, the
sentencepiece models, the output limit learned from the training data (``output_limit``), the
optimizer and its schedule, the step and the RNG states, so that ``translate`` needs nothing
else and ``train --resume`` continues exactly where it stopped. Checkpoints written before a
key existed still load: their config gets the old behaviour of new tokenizer keys
(:data:`OLD_TOKENIZER`), and without ``output_limit`` their config's explicit
``decode.max_len_a/b`` apply, as before.
Where checkpoints go in a run folder: :mod:`seq2seq.training.run_folder`.
"""

import dataclasses
import os
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from seq2seq import __version__
from seq2seq.config import Config, from_dict
from seq2seq.data.lengths import OutputLimit
from seq2seq.data.lengths import resolve as resolve_limit
from seq2seq.data.tokenizer import PAD, Tokenizer
from seq2seq.errors import UserError, first_line
from seq2seq.model.seq2seq import Seq2Seq

FORMAT = 1  # bump when a checkpoint's layout changes
# tokenizer keys added later whose default is not what older checkpoints were trained with
OLD_TOKENIZER = {"underscore_as_letter": False, "split_by_number": True}


def save(payload: Dict[str, Any], path: Union[str, Path]) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``.

    A kill at any moment leaves either the previous file or the new one, never half of one.
    """
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
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except MemoryError:
        raise
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
    if from_dict({"model": ckpt["config"]["model"]}).model != model_cfg:
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


def load_model(dir_or_file, impl: str = None, device="cpu") -> Tuple[Seq2Seq, Tokenizer, Config]:
    """Model (in eval mode), tokenizer and config of a checkpoint; ``impl`` overrides the layer.
    The config's ``decode.max_len_a/b`` are the output limit to use: where the config leaves
    them unset, the one learned from the training data."""
    ckpt = load(dir_or_file)
    path = resolve(dir_or_file)
    try:
        cfg = from_dict(config_of(ckpt))
    except UserError as e:
        raise UserError(f"checkpoint {path} (written by seq2seq {ckpt.get('version', '?')}): "
                        f"its config does not fit this version: {e}") from None
    learned = resolve_limit(cfg.decode, OutputLimit(**ckpt["output_limit"])
                            if ckpt.get("output_limit") else None)
    cfg = cfg.replace(decode=dataclasses.replace(cfg.decode, max_len_a=learned.a,
                                                 max_len_b=learned.b))
    if impl is not None:
        cfg = cfg.replace(model=dataclasses.replace(cfg.model, impl=impl))
    tok = Tokenizer.from_state(ckpt["tokenizer"])
    model = Seq2Seq.from_config(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, PAD)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:  # name the keys: "Missing key(s) in state_dict: ..."
        detail = " ".join(l.strip() for l in str(e).splitlines()[1:] if l.strip())
        raise UserError(f"checkpoint {path}: the weights do not fit its config "
                        f"({detail[:300] or first_line(e)})") from None
    return model.to(device).eval(), tok, cfg


def seed_all(seed: int) -> None:
    """Seed the random number generators that training draws from (torch, Python)."""
    torch.manual_seed(seed)
    random.seed(seed)


def rng_state() -> Dict[str, Any]:
    """The random number generators' states (torch, Python, CUDA), for a checkpoint."""
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(s, rank: int = 0) -> None:
    """Restore what :func:`rng_state` saved: ``s`` is one state, or one per process of a
    distributed run in rank order (this process takes its own; a rank the run did not have
    keeps the generator it was seeded with)."""
    if isinstance(s, list):
        if rank >= len(s):
            return
        s = s[rank]
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def average(paths, out) -> Dict[str, Any]:
    """Average the model weights of several checkpoints of one run into a new checkpoint.

    Config and tokenizer come from the last one; optimizer and training state are dropped, so
    the result is for translating and scoring, not for ``--resume``.
    """
    if len(paths) < 1:
        raise UserError("average needs at least one checkpoint")
    ckpts = [load(p) for p in paths]
    first = ckpts[-1]
    for p, c in zip(paths, ckpts):
        if c["config"]["model"] != first["config"]["model"] or c["tokenizer"] != first["tokenizer"]:
            raise UserError(f"{p} is not from the same run as {paths[-1]} (model config or "
                            "tokenizer differ)")
    avg = {}
    for k, v in first["model"].items():
        if v.is_floating_point():
            avg[k] = sum(c["model"][k].double() for c in ckpts).div(len(ckpts)).to(v.dtype)
        else:
            avg[k] = v
    payload = {"model": avg, "config": first["config"], "tokenizer": first["tokenizer"],
               "output_limit": first.get("output_limit"),
               "averaged_from": [str(resolve(p)) for p in paths]}
    save(payload, out)
    return payload
