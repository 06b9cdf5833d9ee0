"""An exported model run by ONNX Runtime, behind the interface the searches of
:mod:`seq2seq.decoding.search` step (so greedy and beam search, ``translate`` and ``evaluate`` are the
same code for both engines).

An exported folder (written by ``seq2seq export``, :mod:`seq2seq.deploy.export`)::

    encoder.onnx        src (B, S) int64, src_len (B,) int64
                        -> enc_out (B, S, D*H), h (L, B, H) [, c (L, B, H) for LSTM]
    decoder_start.onnx  enc_out (B, S, D*H) -> keys (B, S, A)          (models with attention)
    decoder_step.onnx   y_prev (B,) int64, h, [c], [att (B, O)], [enc_out, keys, pad_mask (B, S) bool]
                        -> logits (B, V), h_out, [c_out], [att_out], [weights (B, S)]
    src.model [tgt.model]   the sentencepiece models (one when trained jointly)
    config.yaml         the checkpoint's config: model, decode settings, data (for evaluate)
    export.json         versions, graph inputs and outputs, int8 or not, the export check

Legend: B batch, S source length, L layers, D encoder directions, H hidden size, A attention
size, O attentional vector size, V target vocabulary. Bracketed tensors exist only for the
models that have them (``c``: LSTM; ``att``: ``model.input_feeding``; ``enc_out``, ``keys``,
``pad_mask`` and ``weights``: attention). ``pad_mask`` is True at source padding.

Tensors cross the engine boundary as zero-copy numpy views (``torch.from_numpy``): the searches
keep working on torch tensors on the CPU.
"""

import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from seq2seq.errors import UserError, require_packages
from seq2seq.model.decoder import DecoderState
from seq2seq.model.encoder import Encoded
from seq2seq.model.rnn import State, length_mask

EXPORT_FORMAT = 1  # bump when the folder's layout or the graphs' interface changes
MARKER = "export.json"
REQUIRED_FILES = ("encoder.onnx", "decoder_step.onnx", "src.model", "config.yaml")  # and MARKER
INSTALL = "pip install 'seq2seq[deploy]'"


def is_exported(path: Union[str, Path]) -> bool:
    """Whether ``path`` is a folder written by ``seq2seq export``."""
    return (Path(path) / MARKER).is_file()


def require(what: str, modules=("onnxruntime",)):
    """Import ``modules`` (returns the last), or stop with one line saying what to install."""
    return require_packages(what, modules, INSTALL)


def _session(path: Path, threads: int):
    ort = require("an exported model")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # a damaged graph: onnxruntime raises its own exception types
        raise UserError(f"cannot load {path}: {str(e).splitlines()[0][:300]}") from None


def _np(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.numpy())


class OnnxEncoder:
    """``encoder.onnx``: ``(src (B, S), src_len (B,))`` -> :class:`Encoded`, like
    :class:`seq2seq.model.encoder.Encoder`."""

    def __init__(self, session) -> None:
        self.session = session
        self.outputs = [o.name for o in session.get_outputs()]

    def __call__(self, src: Tensor, src_len: Tensor) -> Encoded:
        outs = dict(zip(self.outputs, self.session.run(
            self.outputs, {"src": _np(src), "src_len": _np(src_len)})))
        out = torch.from_numpy(outs["enc_out"])  # (B, S, D*H)
        c = torch.from_numpy(outs["c"]) if "c" in outs else None  # (L, B, H)
        pad_mask = ~length_mask(src_len, src.size(1))  # (B, S)
        return Encoded(out, pad_mask, State(torch.from_numpy(outs["h"]), c))


class OnnxDecoder:
    """``decoder_start.onnx`` and ``decoder_step.onnx`` behind :class:`seq2seq.model.decoder.Decoder`'s
    ``start`` / ``projector`` / ``step``."""

    def __init__(self, start, step, out_size: int) -> None:
        self.start_session, self.step_session = start, step
        self.attention = start  # the attention's key projection; None: a model without attention
        self.out_size = out_size  # O
        self.inputs = [i.name for i in step.get_inputs()]
        self.outputs = [o.name for o in step.get_outputs()]
        self.input_feeding = "att" in self.inputs

    def start(self, enc: Encoded) -> DecoderState:
        """Bridged encoder state, zero attentional vector, attention keys ``(B, S, A)``."""
        B = enc.out.size(0)
        att = enc.out.new_zeros(B, self.out_size) if self.input_feeding else None
        keys = None
        if self.start_session is not None:
            keys = torch.from_numpy(self.start_session.run(["keys"],
                                                           {"enc_out": _np(enc.out)})[0])
        return DecoderState(enc.state, att, keys)

    def projector(self, batch: int) -> Optional[Callable[[Tensor], Tensor]]:
        """The output projection is inside ``decoder_step.onnx``: nothing to prepare."""
        return None

    def step(self, y_prev: Tensor, state: DecoderState, enc: Encoded, project=None
             ) -> Tuple[Tensor, DecoderState, Optional[Tensor]]:
        """One step from ``y_prev (B,)``: logits ``(B, V)``, new state, weights ``(B, S)``."""
        given = {"y_prev": y_prev, "h": state.rnn.h, "c": state.rnn.c, "att": state.att,
                 "enc_out": enc.out, "keys": state.keys, "pad_mask": enc.pad_mask}
        outs = dict(zip(self.outputs, self.step_session.run(
            self.outputs, {k: _np(given[k]) for k in self.inputs})))
        t = {k: torch.from_numpy(v) for k, v in outs.items()}
        rnn = State(t["h_out"], t.get("c_out"))
        return t["logits"], DecoderState(rnn, t.get("att_out"), state.keys), t.get("weights")


class OnnxSeq2Seq:
    """An exported model: ``encoder`` and ``decoder`` as :mod:`seq2seq.decoding.search` uses them.

    Runs on the CPU with ONNX Runtime; ``threads``: its intra-op threads (0: torch's count).
    With its tokenizer and config, from a path: :func:`seq2seq.load.load_exported`.
    """

    engine = "onnxruntime"

    def __init__(self, folder: Union[str, Path], threads: int = 0) -> None:
        folder = Path(folder)
        self.folder = folder
        self.info: Dict = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        if self.info.get("format") != EXPORT_FORMAT:
            raise UserError(f"{folder} was exported in format {self.info.get('format')} (by "
                            f"seq2seq {self.info.get('seq2seq', '?')}); this version reads "
                            f"format {EXPORT_FORMAT}: export the checkpoint again")
        start = folder / "decoder_start.onnx"
        self.encoder = OnnxEncoder(_session(folder / "encoder.onnx", threads))
        self.decoder = OnnxDecoder(_session(start, threads) if start.is_file() else None,
                                   _session(folder / "decoder_step.onnx", threads),
                                   self.info["out_size"])
        self.int8 = bool(self.info.get("int8"))

    def eval(self) -> "OnnxSeq2Seq":
        return self

    def describe(self) -> str:
        return f"ONNX Runtime {'int8' if self.int8 else 'float32'} export in {self.folder}"


def file_sizes(folder: Union[str, Path]) -> Dict[str, int]:
    """Bytes of each graph in an exported folder, and their total."""
    sizes = {p.name: p.stat().st_size for p in sorted(Path(folder).glob("*.onnx"))}
    sizes["total"] = sum(sizes.values())
    return sizes


def graph_io(folder: Union[str, Path]) -> Dict[str, Dict[str, List[str]]]:
    """Each graph's input and output names, as ONNX Runtime sees them."""
    out = {}
    for p in sorted(Path(folder).glob("*.onnx")):
        s = _session(p, 1)
        out[p.name] = {"inputs": [i.name for i in s.get_inputs()],
                       "outputs": [o.name for o in s.get_outputs()]}
    return out
