"""Checkpoints: written atomically, loaded with clear errors, turned back into a model.

A checkpoint is one ``torch.save`` file holding the model weights, the config, the
sentencepiece models, the optimizer and its schedule, the step and the RNG states, so that
``translate`` needs nothing else and ``train --resume`` continues exactly where it stopped.
"""

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import torch

from . import __version__
from .config import Config, from_dict
from .errors import UserError
from .model import Seq2Seq
from .tokenizer import PAD, Tokenizer

FORMAT = 1  # bump when a checkpoint's layout changes


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
    path = resolve(dir_or_file)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            AttributeError, ImportError, IndexError, KeyError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"checkpoint {path} is truncated or corrupted ({msg})") from None
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise UserError(f"{path} is not a seq2seq checkpoint")
    if ckpt["format"] != FORMAT:
        raise UserError(f"checkpoint {path} has format {ckpt['format']} (written by seq2seq "
                        f"{ckpt.get('version', '?')}); this is seq2seq {__version__}, which "
                        f"reads format {FORMAT}")
    return ckpt


def load_model(dir_or_file, impl: str = None, device="cpu") -> Tuple[Seq2Seq, Tokenizer, Config]:
    """Model (in eval mode), tokenizer and config of a checkpoint; ``impl`` overrides the layer."""
    ckpt = load(dir_or_file)
    cfg = from_dict(ckpt["config"])
    if impl is not None:
        import dataclasses

        cfg = cfg.replace(model=dataclasses.replace(cfg.model, impl=impl))
    tok = Tokenizer.from_state(ckpt["tokenizer"])
    model = Seq2Seq.from_config(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, PAD)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"checkpoint {resolve(dir_or_file)}: weights do not fit its config "
                        f"({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), tok, cfg
