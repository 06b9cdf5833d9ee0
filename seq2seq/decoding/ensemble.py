"""Ensembles: several models decoding as one, by averaging their log-probabilities each step.

    models, tok, cfg, device = load_for_decoding(["runs/a", "runs/b"])   # seq2seq.load
    state = models.start(src, src_len)                  # encode once per model
    scores, state, weights = models.step(y, state)      # (B, V), one step of every model

At every step each model predicts from its own state, fed the same previous token, and the
ensemble's distribution is the normalized mean of the models' log-probabilities (a product of
experts: ``log p(y) = log_softmax(mean_m log p_m(y))``; Marian and Sockeye offer the same
"log-linear" combination). One model is an ensemble of one, so every search goes through this
class; with one model ``step`` hands back the raw logits (same argmax, same ``log_softmax``,
no extra work). The models must share the vocabulary (the same sentencepiece models:
:func:`check_vocabularies`); their architectures may differ.
"""

from typing import NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from seq2seq.errors import UserError
from seq2seq.model.decoder import DecoderState
from seq2seq.model.encoder import Encoded


class EnsembleState(NamedTuple):
    """Per model: encoder outputs, decoder state and output projection of one decoding batch."""

    enc: Tuple[Encoded, ...]
    dec: Tuple[DecoderState, ...]
    project: tuple  # per model, Decoder.projector(batch)

    def reorder(self, idx: Tensor) -> "EnsembleState":
        """Row ``i`` of the decoder states becomes row ``idx[i]`` (beams within a sentence: the
        encoder outputs stay as they are)."""
        return self._replace(dec=tuple(d.select(idx) for d in self.dec))

    def keep(self, idx: Tensor) -> "EnsembleState":
        """Keep the rows ``idx`` of everything (finished sentences leave the batch)."""
        enc = tuple(Encoded(e.out[idx], e.pad_mask[idx], e.state) for e in self.enc)
        return self._replace(enc=enc, dec=tuple(d.select(idx) for d in self.dec))


class Ensemble:
    """One or more :class:`seq2seq.model.seq2seq.Seq2Seq` models (in eval mode) that decode together.

    Args:
        models: the models; they must share the target vocabulary.

    :meth:`step` returns ``scores (B, V)`` such that ``argmax(scores)`` is the ensemble's most
    probable token and ``log_softmax(scores)`` its log-probabilities: the raw logits of a
    single model, the mean of the models' log-probabilities for several.
    """

    def __init__(self, models: Sequence) -> None:
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.models = list(models)

    @classmethod
    def of(cls, model) -> "Ensemble":
        """``model`` itself if it is an ensemble, else an ensemble of that one model."""
        return model if isinstance(model, Ensemble) else cls([model])

    def __len__(self) -> int:
        return len(self.models)

    @property
    def has_attention(self) -> bool:
        return all(m.decoder.attention is not None for m in self.models)

    def eval(self) -> "Ensemble":
        for m in self.models:
            m.eval()
        return self

    def start(self, src: Tensor, src_len: Tensor, repeat: int = 1) -> EnsembleState:
        """Encode ``src (B, S)`` with every model; ``repeat``: each sentence takes that many
        consecutive rows (beams), so the state has ``B * repeat`` rows."""
        encs, decs, projs = [], [], []
        rep = torch.arange(src.size(0), device=src.device).repeat_interleave(repeat)  # (B*R,)
        for m in self.models:
            enc = m.encoder(src, src_len)
            if repeat > 1:
                enc = Encoded(enc.out[rep], enc.pad_mask[rep], enc.state.map(lambda t: t[:, rep]))
            encs.append(enc)
            decs.append(m.decoder.start(enc))
            projs.append(m.decoder.projector(len(rep)))
        return EnsembleState(tuple(encs), tuple(decs), tuple(projs))

    def step(self, y_prev: Tensor, state: EnsembleState
             ) -> Tuple[Tensor, EnsembleState, Optional[Tensor]]:
        """One step from the previous tokens ``y_prev (B,)``: scores ``(B, V)`` (see the class
        docstring), the new state, and the attention weights ``(B, S)`` (the models' mean;
        None when a model has no attention)."""
        outs, decs, weights = [], [], []
        for m, enc, dec, proj in zip(self.models, state.enc, state.dec, state.project):
            logits, dec, w = m.decoder.step(y_prev, dec, enc, proj)  # (B, V), ..., (B, S)
            outs.append(logits)
            decs.append(dec)
            weights.append(w)
        state = state._replace(dec=tuple(decs))
        w = None if any(x is None for x in weights) else (
            weights[0] if len(weights) == 1 else torch.stack(weights).float().mean(0))
        if len(outs) == 1:
            return outs[0], state, w
        logp = torch.stack([torch.log_softmax(o.float(), -1) for o in outs])  # (M, B, V)
        return logp.mean(0), state, w  # (B, V)

    def teacher_forced(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        """The ensemble's log-probabilities ``(B, T, V)`` for every position of ``tgt_in``
        (BOS + target, padded), each model fed the gold previous tokens."""
        logp = [torch.log_softmax(m(src, src_len, tgt_in).float(), -1) for m in self.models]
        if len(logp) == 1:
            return logp[0]
        return torch.log_softmax(torch.stack(logp).mean(0), -1)  # (B, T, V)


def check_vocabularies(paths: Sequence, tokenizers: Sequence) -> None:
    """An ensemble's checkpoints must hold the same sentencepiece models (UserError if not)."""
    first = tokenizers[0]
    for p, t in zip(paths[1:], tokenizers[1:]):
        if t.state() != first.state():
            sizes = (f"{t.src_vocab_size}/{t.tgt_vocab_size} source/target pieces against "
                     f"{first.src_vocab_size}/{first.tgt_vocab_size}")
            raise UserError(f"--checkpoint {p} has a different vocabulary from {paths[0]} "
                            f"({sizes}, different sentencepiece models): an ensemble needs "
                            "models trained with the same tokenizer")
