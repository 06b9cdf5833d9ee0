"""``seq2seq export``: a checkpoint as ONNX graphs for ONNX Runtime, optionally int8, checked.

    export("runs/m30k/best.pt", "deploy/m30k", int8=False)   # seq2seq export --checkpoint ...

The encoder, the attention-key projection and one decoder step become three graphs (the
interface: :mod:`seq2seq.decoding.onnx_model`), traced from the fused layers (``nn.LSTM``/``nn.GRU``;
a ``manual`` checkpoint has the same weights), so the recurrent layers are ONNX ``LSTM``/``GRU``
operators with ``sequence_lens``: the batch and the source length are dynamic. The graphs are
traced with torch's TorchScript-based exporter (``dynamo=False``): it maps packed sequences to
``sequence_lens``, needs no extra package, and its deprecation notices are silenced here.

``int8``: ONNX Runtime's own dynamic quantizer (``onnxruntime.quantization.quantize_dynamic``)
turns the weights of the matrix products (``MatMul``/``Gemm``) and of the ``LSTM`` operator
into int8 (per output channel; activations are quantized on the fly, per call), and stores the
embedding tables (``Gather``) in int8 too (on Multi30k: 8.9 MB instead of 21 MB for
the products alone, BLEU -0.1 more). The ``GRU`` operator stays float32 (the quantizer has no
int8 GRU); its model's projections are still int8.

Every export is checked before the folder is put in place: a few sentences are decoded with
the checkpoint (PyTorch) and with the exported graphs (ONNX Runtime), greedy and beam, and the
first decoding step's logits are compared. A float32 export whose greedy outputs disagree on
more than one sentence in ten, or whose logits differ by more than 1e-3, is an error; an int8
export reports its agreement.
"""

import contextlib
import dataclasses
import json
import os
import random
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq import __version__
from seq2seq.config import to_yaml
from seq2seq.data.tokenizer import BOS, PAD
from seq2seq.decoding.onnx_model import EXPORT_FORMAT, MARKER, OnnxSeq2Seq, file_sizes, graph_io
from seq2seq.decoding.settings import decode_settings
from seq2seq.errors import UserError, first_line
from seq2seq.model.decoder import DecoderState
from seq2seq.model.encoder import Encoded
from seq2seq.model.rnn import State
from seq2seq.training import model_card

from .packages import EXPORT, require

OPSET = 17
MAX_LOGIT_DIFF = 1e-3  # float32 export: the largest first-step logit difference accepted
MIN_AGREEMENT = 0.9  # float32 export: the smallest share of identical greedy outputs accepted


class EncoderGraph(nn.Module):
    """The encoder as traced: ``src (B, S)``, ``src_len (B,)`` -> ``enc_out (B, S, D*H)``,
    ``h (L, B, H)`` [, ``c (L, B, H)``]. Always packs (the fused layer skips packing when a
    batch has no padding, a choice a trace would freeze)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, src: Tensor, src_len: Tensor):
        enc = self.encoder
        rnn = enc.rnn
        x = enc.embedding(src)  # (B, S, E)
        packed = pack_padded_sequence(x, src_len, batch_first=True, enforce_sorted=False)
        base = nn.LSTM if rnn.cell == "lstm" else nn.GRU
        out, hx = base.forward(rnn, packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))  # (B, S, D*H)
        state = enc.bridge(State.from_torch(hx))  # (L, B, H) each
        return (out, state.h) if state.c is None else (out, state.h, state.c)


class KeysGraph(nn.Module):
    """``enc_out (B, S, D*H)`` -> attention ``keys (B, S, A)``, once per batch."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, enc_out: Tensor) -> Tensor:
        return self.decoder.attention.keys(enc_out)  # (B, S, A)


class StepGraph(nn.Module):
    """One decoder step with its state as named tensors (see :mod:`seq2seq.decoding.onnx_model`)."""

    def __init__(self, decoder: nn.Module, cell: str) -> None:
        super().__init__()
        self.decoder = decoder
        attention = decoder.attention is not None
        self.inputs = (["y_prev", "h"] + (["c"] if cell == "lstm" else [])
                       + (["att"] if decoder.input_feeding else [])
                       + (["enc_out", "keys", "pad_mask"] if attention else []))
        self.outputs = (["logits", "h_out"] + (["c_out"] if cell == "lstm" else [])
                        + (["att_out"] if decoder.input_feeding else [])
                        + (["weights"] if attention else []))

    def forward(self, *args: Tensor):
        a = dict(zip(self.inputs, args))
        state = DecoderState(State(a["h"], a.get("c")), a.get("att"), a.get("keys"))
        enc = Encoded(a.get("enc_out"), a.get("pad_mask"), state.rnn)
        logits, new, weights = self.decoder.step(a["y_prev"], state, enc)  # (B, V)
        out = {"logits": logits, "h_out": new.rnn.h, "c_out": new.rnn.c, "att_out": new.att,
               "weights": weights}
        return tuple(out[k] for k in self.outputs)


_AXES = {"src": {0: "batch", 1: "src_len"}, "src_len": {0: "batch"}, "y_prev": {0: "batch"},
         "enc_out": {0: "batch", 1: "src_len"}, "keys": {0: "batch", 1: "src_len"},
         "pad_mask": {0: "batch", 1: "src_len"}, "weights": {0: "batch", 1: "src_len"},
         "h": {1: "batch"}, "c": {1: "batch"}, "h_out": {1: "batch"}, "c_out": {1: "batch"},
         "att": {0: "batch"}, "att_out": {0: "batch"}, "logits": {0: "batch"}}


@contextlib.contextmanager
def _quiet():
    """Silence the exporter: Python warnings, and the C++ notices it writes to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _trace(module: nn.Module, args: Tuple[Tensor, ...], inputs: List[str],
           outputs: List[str], path: Path) -> None:
    try:
        with _quiet(), torch.no_grad():
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET,
                              input_names=inputs, output_names=outputs,
                              dynamic_axes={k: _AXES[k] for k in inputs + outputs})
    except Exception as e:
        raise UserError(f"exporting {path.name} failed: {type(e).__name__}: "
                        f"{first_line(e)[:300]}") from None


def write_graphs(model: nn.Module, cell: str, folder: Path) -> None:
    """Trace ``model`` (fused layers, eval mode) into ``folder``'s three graphs."""
    g = torch.Generator().manual_seed(0)
    B, S = 3, 7  # example inputs: padded rows, so the packed path is what gets traced
    src = torch.randint(4, model.encoder.embedding.num_embeddings, (B, S), generator=g)
    src_len = torch.tensor([S, 5, 2])
    src[1, 5:] = src[2, 2:] = PAD
    enc_graph = EncoderGraph(model.encoder).eval()
    enc_names = ["enc_out", "h"] + (["c"] if cell == "lstm" else [])
    _trace(enc_graph, (src, src_len), ["src", "src_len"], enc_names, folder / "encoder.onnx")
    with torch.no_grad():
        enc = model.encoder(src, src_len)
        state = model.decoder.start(enc)
    dec = model.decoder
    if dec.attention is not None:
        _trace(KeysGraph(dec).eval(), (enc.out,), ["enc_out"], ["keys"],
               folder / "decoder_start.onnx")
    step = StepGraph(dec, cell).eval()
    given = {"y_prev": torch.tensor([BOS, 5, 9]), "h": state.rnn.h, "c": state.rnn.c,
             "att": state.att, "enc_out": enc.out, "keys": state.keys, "pad_mask": enc.pad_mask}
    _trace(step, tuple(given[k] for k in step.inputs), step.inputs, step.outputs,
           folder / "decoder_step.onnx")


def quantize(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization of every graph in ``src`` into ``dst`` (ONNX Runtime's own)."""
    require("seq2seq export --int8", EXPORT)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for p in sorted(src.glob("*.onnx")):
        with _quiet():
            quantize_dynamic(str(p), str(dst / p.name), weight_type=QuantType.QInt8,
                             per_channel=True,
                             op_types_to_quantize=["MatMul", "Gemm", "LSTM", "Gather"])


def check_lines(cfg, tok, n: int, path: Optional[str]) -> Tuple[List[str], str]:
    """Up to ``n`` source lines for the check: ``path``, else the config's validation (or test)
    split when its data can still be read, else random sequences of source pieces."""
    from seq2seq.data.readers import read_lines

    if path:
        lines = [l for l in read_lines(path, "strict", "check input") if l.strip()][:n]
        if not lines:
            raise UserError(f"--check-input {path} has no non-empty line")
        return lines, f"{len(lines)} sentences of {path}"
    from seq2seq.decoding.evaluate import read_split

    for split in (cfg.data.valid_split, cfg.data.test_split):
        if not split:
            continue
        try:
            srcs, _ = read_split(cfg, split)
        except Exception:  # the data may have moved since training: fall back to pieces
            continue
        lines = [l for l in srcs if l.strip()][:n]
        if lines:
            return lines, f"the first {len(lines)} sentences of the {split} split"
    rng = random.Random(0)
    pieces = [i for i in range(4, tok.src_vocab_size) if not tok.src.is_byte(i)]
    lines = [tok.src.decode([rng.choice(pieces) for _ in range(rng.randint(3, 15))])
             for _ in range(n)]
    return lines, f"{n} random sequences of source pieces (the training data was not found)"


def compare(model: nn.Module, onnx_model: OnnxSeq2Seq, tok, cfg, lines: List[str],
            beam: int) -> Dict[str, Any]:
    """Decode ``lines`` both ways (greedy and ``beam``); share of identical outputs, and the
    largest encoder-output and first-step-logit differences on them."""
    from seq2seq.data.batching import collate
    from seq2seq.decoding.search import translate

    greedy_opts = decode_settings(cfg.decode, beam=1, n_best=1, bf16=False, sample=False)
    beam_opts = decode_settings(cfg.decode, beam=beam, n_best=1, bf16=False)
    res: Dict[str, Any] = {"sentences": len(lines)}
    for name, opts in (("greedy", greedy_opts), (f"beam{beam}", beam_opts)):
        a = translate(model, tok, lines, opts).hyps
        b = translate(onnx_model, tok, lines, opts).hyps
        res[f"{name}_identical"] = sum(x == y for x, y in zip(a, b))
    batch = collate([ids[:cfg.decode.max_src_len] for ids in tok.encode_src(lines)], None,
                    range(len(lines)))
    with torch.inference_mode():
        y = torch.full((len(lines),), BOS, dtype=torch.long)
        diffs = []
        for m in (model, onnx_model):
            enc = m.encoder(batch.src, batch.src_len)
            logits, _, _ = m.decoder.step(y, m.decoder.start(enc), enc)
            diffs.append((enc.out, logits))
    res["max_enc_out_diff"] = float((diffs[0][0] - diffs[1][0]).abs().max())
    res["max_logit_diff"] = float((diffs[0][1] - diffs[1][1]).abs().max())
    return res


def export(checkpoint, out, int8: bool = False, overwrite: bool = False,
           check_sentences: int = 20, check_input: Optional[str] = None,
           log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Export ``checkpoint`` into the folder ``out`` (see :func:`export_model`)."""
    require("seq2seq export", EXPORT)
    from seq2seq.load import load_model
    from seq2seq.training.checkpoint import resolve

    _check_out(Path(out), overwrite)
    model, tok, cfg = load_model(checkpoint, device=torch.device("cpu"), impl="fused")
    return export_model(model, tok, cfg, out, int8, overwrite, check_sentences, check_input,
                        log, source=str(resolve(checkpoint)))


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file()):
            raise UserError(f"--out {out} exists and is not an exported model: choose another "
                            "folder")
        if (out / MARKER).is_file() and not overwrite:
            raise UserError(f"--out {out} already holds an exported model: add --overwrite to "
                            "replace it")
    parent = out.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise UserError(f"cannot write --out {out}: {parent} is a file, not a folder")
    parent.mkdir(parents=True, exist_ok=True)  # deploy/my: deploy/ made as train --out does


def export_model(model: nn.Module, tok, cfg, out, int8: bool = False, overwrite: bool = False,
                 check_sentences: int = 20, check_input: Optional[str] = None,
                 log: Callable[[str], None] = print, source: str = "") -> Dict[str, Any]:
    """Export a :class:`seq2seq.model.seq2seq.Seq2Seq` (fused layers, on the CPU) with its tokenizer and
    config into the folder ``out``, check it (see the module's docstring) and return what
    ``export.json`` says. The folder is made beside ``out`` and renamed into place at the end,
    so a failed export leaves nothing behind."""
    require("seq2seq export", EXPORT)
    out = Path(out)
    _check_out(out, overwrite)
    if cfg.model.impl != "fused":  # the same weights in nn.LSTM/nn.GRU: ONNX LSTM/GRU operators
        from seq2seq.model.seq2seq import Seq2Seq

        fused = Seq2Seq.from_config(dataclasses.replace(cfg.model, impl="fused"),
                                    tok.src_vocab_size, tok.tgt_vocab_size, PAD)
        fused.load_state_dict(model.state_dict())
        model = fused
    model = model.eval()
    cfg = cfg.replace(decode=dataclasses.replace(cfg.decode, bf16=False))
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.resolve().parent))
    try:
        fp32 = tmp / "float32" if int8 else tmp
        fp32.mkdir(exist_ok=True)
        write_graphs(model, cfg.model.cell, fp32)
        if int8:
            quantize(fp32, tmp)
            shutil.rmtree(fp32)
        state = tok.state()
        (tmp / "src.model").write_bytes(state["src"])
        if state["tgt"] is not None:
            (tmp / "tgt.model").write_bytes(state["tgt"])
        (tmp / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
        info: Dict[str, Any] = {
            "format": EXPORT_FORMAT, "seq2seq": __version__, "torch": torch.__version__,
            "onnx": require("seq2seq export", ("onnx",)).__version__,
            "onnxruntime": require("seq2seq export", ("onnxruntime",)).__version__,
            "opset": OPSET, "int8": int8,
            "checkpoint": source, "out_size": model.decoder.out_size,
            "underscore_as_letter": state.get("underscore_as_letter", False)}
        (tmp / MARKER).write_text(json.dumps(info, indent=2), encoding="utf-8")
        info["graphs"] = graph_io(tmp)
        info["bytes"] = file_sizes(tmp)
        lines, where = check_lines(cfg, tok, check_sentences, check_input)
        beam = max(2, cfg.decode.beam)
        check = compare(model, OnnxSeq2Seq(tmp), tok, cfg, lines, beam)
        info["check"] = dict(check, lines=where)
        n = check["sentences"]
        log(f"export check on {where}: greedy outputs identical on {check['greedy_identical']}/"
            f"{n}, beam {beam} on {check[f'beam{beam}_identical']}/{n}; largest difference: "
            f"encoder outputs {check['max_enc_out_diff']:.1e}, first-step logits "
            f"{check['max_logit_diff']:.1e}")
        if not int8 and (check["max_logit_diff"] > MAX_LOGIT_DIFF
                         or check["greedy_identical"] < MIN_AGREEMENT * n):
            raise UserError("the export check failed: the ONNX graphs do not compute what the "
                            "checkpoint computes (see the line above); nothing was written")
        (tmp / MARKER).write_text(json.dumps(info, indent=2), encoding="utf-8")
        model_card.write(tmp, shown_as=str(out))  # README.md: what the exported model is
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return info
