"""From a path to a model: what ``--checkpoint`` names becomes a model, its tokenizer and its
config, here and nowhere else (the CLI, the server, export, the comparison, the recipes).

    model, tok, cfg = load_model("runs/m30k", device="cpu")         # one checkpoint: Seq2Seq
    model, tok, cfg, device = load_for_decoding(["runs/a", "runs/b"])   # an Ensemble
    model, tok, cfg, device = load_for_decoding("deploy/m30k")      # an exported folder: ONNX

A path is a checkpoint file (``.pt``), a run folder (its ``best.pt``, else ``last.pt``) or a
folder written by ``seq2seq export`` (run by ONNX Runtime); several paths are an ensemble of
checkpoints. The config that comes back has ``decode.max_len_a/b`` set: where the checkpoint's
config leaves them unset, to the output limit learned from the training data. What a
checkpoint file holds, and the checks made when reading it: :mod:`seq2seq.training.checkpoint`;
an exported folder's layout: :mod:`seq2seq.decoding.onnx_model`. Relative data paths in a
checkpoint's config are read from the checkpoint's folder: training stores the files that lie in
its run folder relative to it (:meth:`seq2seq.training.run_folder.RunFolder.stored_config`), so
the folder can move.
"""

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import torch

from seq2seq.config import Config, from_dict
from seq2seq.config import load as load_config
from seq2seq.data.lengths import OutputLimit
from seq2seq.data.lengths import resolve as resolve_limit
from seq2seq.data.readers import absolute_paths
from seq2seq.data.tokenizer import PAD, Tokenizer
from seq2seq.decoding.ensemble import Ensemble, check_vocabularies
from seq2seq.decoding.onnx_model import MARKER, REQUIRED_FILES, OnnxSeq2Seq, is_exported, require
from seq2seq.kernels.device import pick_device
from seq2seq.errors import UserError, first_line
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.training import checkpoint

PathLike = Union[str, os.PathLike]


class Loaded(NamedTuple):
    """A model with the tokenizer and config it was trained with."""

    model: Any  # Seq2Seq (eval mode) or OnnxSeq2Seq (an exported folder)
    tokenizer: Tokenizer
    config: Config


class ForDecoding(NamedTuple):
    """What decoding needs: :class:`Loaded`, and the device the model is on."""

    model: Any  # Ensemble (PyTorch) or OnnxSeq2Seq (an exported folder)
    tokenizer: Tokenizer
    config: Config
    device: torch.device


def load_model(path: PathLike, *, device="cpu", impl: Optional[str] = None) -> Loaded:
    """Model (a :class:`seq2seq.model.seq2seq.Seq2Seq` in eval mode, on ``device``), tokenizer
    and config of one checkpoint (a ``.pt`` file or a run folder); ``impl`` (``manual`` |
    ``fused``) overrides the layers the checkpoint was trained with (the weights are the same)."""
    file = checkpoint.resolve(path)
    ckpt = checkpoint.load(file)
    try:
        cfg = from_dict(checkpoint.config_of(ckpt))
    except UserError as e:
        raise UserError(f"checkpoint {file} (written by seq2seq {ckpt.get('version', '?')}): "
                        f"its config does not fit this version: {e}") from None
    learned = resolve_limit(cfg.decode, OutputLimit(**ckpt["output_limit"])
                            if ckpt.get("output_limit") else None)
    cfg = cfg.replace(decode=dataclasses.replace(cfg.decode, max_len_a=learned.a,
                                                 max_len_b=learned.b),
                      data=absolute_paths(cfg.data, root=file.parent))  # from the run folder
    if impl is not None:
        cfg = cfg.replace(model=dataclasses.replace(cfg.model, impl=impl))
    tok = Tokenizer.from_state(ckpt["tokenizer"])
    model = Seq2Seq.from_config(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, PAD)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:  # name the keys: "Missing key(s) in state_dict: ..."
        detail = " ".join(l.strip() for l in str(e).splitlines()[1:] if l.strip())
        raise UserError(f"checkpoint {file}: the weights do not fit its config "
                        f"({detail[:300] or first_line(e)})") from None
    return Loaded(model.to(device).eval(), tok, cfg)


def load_exported(folder: PathLike, *, threads: int = 0) -> Loaded:
    """Model (:class:`seq2seq.decoding.onnx_model.OnnxSeq2Seq`, on the CPU with ``threads``
    intra-op threads; 0: torch's number), tokenizer and config of a folder written by
    ``seq2seq export``."""
    folder = Path(folder)
    require("an exported model")
    missing = [n for n in REQUIRED_FILES if not (folder / n).is_file()]
    if missing:
        raise UserError(f"{folder} is an incomplete export (no {', '.join(missing)}): export "
                        "the checkpoint again")
    cfg = load_config(folder / "config.yaml")
    tgt = folder / "tgt.model"
    info = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    tok = Tokenizer((folder / "src.model").read_bytes(),
                    tgt.read_bytes() if tgt.is_file() else None,
                    info.get("underscore_as_letter", False))
    return Loaded(OnnxSeq2Seq(folder, threads), tok, cfg)


def load_for_decoding(paths, *, impl: Optional[str] = None, device="auto", threads: int = 0,
                      exported: bool = True) -> ForDecoding:
    """The model to decode with (``translate``, ``evaluate``, ``score``, ``serve``, the recipes):
    one path or several. Checkpoints become an :class:`seq2seq.decoding.ensemble.Ensemble` (of
    one, for one path) on ``device`` (``auto``: CUDA where torch sees a GPU), with the first
    one's tokenizer and config; their vocabularies must be the same. A folder written by
    ``seq2seq export`` (``exported``: accepted; False where the command needs PyTorch) runs by
    ONNX Runtime on the CPU with ``threads`` threads, alone (not in an ensemble)."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    onnx = [p for p in paths if exported and is_exported(p)]
    if onnx:
        if len(paths) > 1:
            raise UserError(f"{onnx[0]} is an exported folder: an ensemble takes PyTorch "
                            "checkpoints (run folders or .pt files)")
        if impl is not None:
            raise UserError("--impl chooses PyTorch's layers; an exported model runs its ONNX "
                            "graphs (drop --impl)")
        if str(device).startswith("cuda"):
            raise UserError("an exported model runs on the CPU with ONNX Runtime (drop "
                            "--device cuda)")
        return ForDecoding(*load_exported(paths[0], threads=threads), torch.device("cpu"))
    device = pick_device(device) if isinstance(device, str) else device
    loaded = [load_model(p, device=device, impl=impl) for p in paths]
    check_vocabularies(paths, [x.tokenizer for x in loaded])
    return ForDecoding(Ensemble([x.model for x in loaded]), loaded[0].tokenizer,
                       loaded[0].config, device)
