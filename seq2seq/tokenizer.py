"""SentencePiece subwords: trained on the training split, stored inside the checkpoint.

Fixed ids (the same in every model this toolkit trains):

    PAD = 0   padding; never predicted (masked out of the loss)
    UNK = 1   unknown piece (rare: byte fallback spells unseen characters as UTF-8 bytes)
    BOS = 2   first decoder input
    EOS = 3   end of a target sentence

Normalization is ``identity`` with ``remove_extra_whitespaces=False`` and byte fallback, so that
``decode(encode(x)) == x`` for any text (NFKC normalization and whitespace folding would change
about 0.3% of Multi30k lines and print unseen characters as `` ⁇ ``). Two characters need help:
sentencepiece writes spaces as ``▁`` (U+2581), so a ``▁`` in the text would come back as a space;
it is escaped to a private-use pair on the way in (see :func:`escape`). Lone surrogates (which
only Python strings can hold, never UTF-8 text) become U+FFFD.
"""

import io
import re
from typing import Iterable, List, Optional, Sequence

import sentencepiece as spm

from .errors import UserError

PAD, UNK, BOS, EOS = 0, 1, 2, 3
_BYTE_PIECES = 256
_MAX_TRAIN_CHARS = 4096  # longer lines are cut to this for training the tokenizer (only)
_ESC = "\ue000"  # private use: starts an escape; "\ue000\ue001" is "▁", "\ue000\ue000" is itself
_ESCAPES = {"\u2581": _ESC + "\ue001", _ESC: _ESC + _ESC}
_UNESCAPE = re.compile(_ESC + "([" + _ESC + "\ue001])")
_SURROGATES = re.compile("[\ud800-\udfff]")


def escape(text: str) -> str:
    """Text as sentencepiece sees it: ``▁`` (its space symbol) and the escape mark escaped,
    lone surrogates replaced by U+FFFD."""
    if "\u2581" in text or _ESC in text:
        text = text.replace(_ESC, _ESCAPES[_ESC]).replace("\u2581", _ESCAPES["\u2581"])
    return _SURROGATES.sub("\ufffd", text)


def unescape(text: str) -> str:
    """The inverse of :func:`escape`; an escape mark the model emitted alone is kept as is."""
    if _ESC not in text:
        return text
    return _UNESCAPE.sub(lambda m: _ESC if m.group(1) == _ESC else "\u2581", text)


def train_model(lines: Sequence[str], vocab_size: int, model_type: str = "bpe",
                character_coverage: float = 1.0, byte_fallback: bool = True,
                split_digits: bool = False) -> bytes:
    """Train a sentencepiece model on ``lines`` and return its serialized proto.

    A ``vocab_size`` larger than the data can fill is not an error (``hard_vocab_limit=False``
    gives a smaller vocabulary); one too small to hold every character (and the 256 byte
    pieces of byte fallback) is raised to the minimum.
    """
    # sentencepiece skips lines over max_sentence_length bytes: cut them instead (4 bytes/char)
    lines = [escape(l)[:_MAX_TRAIN_CHARS] for l in lines if l.strip()]
    if not lines:
        raise UserError("cannot train a tokenizer: the training text is empty or blank")
    chars = set()
    for l in lines:
        chars.update(l)
    minimum = 4 + len(chars) + (_BYTE_PIECES if byte_fallback else 0) + 1
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=writer,
        vocab_size=max(vocab_size, minimum), model_type=model_type, hard_vocab_limit=False,
        character_coverage=character_coverage, byte_fallback=byte_fallback,
        split_digits=split_digits,
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        max_sentence_length=4 * _MAX_TRAIN_CHARS, input_sentence_size=2_000_000,
        shuffle_input_sentence=True, minloglevel=2, num_threads=2)
    return writer.getvalue()


class Tokenizer:
    """Source and target sentencepiece models (the same model when trained jointly)."""

    def __init__(self, src_proto: bytes, tgt_proto: Optional[bytes] = None) -> None:
        self.src_proto = src_proto
        self.tgt_proto = tgt_proto if tgt_proto is not None else src_proto
        self.src = spm.SentencePieceProcessor(model_proto=self.src_proto)
        self.tgt = spm.SentencePieceProcessor(model_proto=self.tgt_proto)

    @classmethod
    def train(cls, src_lines: Sequence[str], tgt_lines: Sequence[str], cfg) -> "Tokenizer":
        """Train from a :class:`seq2seq.config.TokenizerConfig`."""
        kw = dict(vocab_size=cfg.vocab_size, model_type=cfg.model_type,
                  character_coverage=cfg.character_coverage, byte_fallback=cfg.byte_fallback,
                  split_digits=cfg.split_digits)
        if cfg.joint:
            return cls(train_model(list(src_lines) + list(tgt_lines), **kw))
        return cls(train_model(src_lines, **kw), train_model(tgt_lines, **kw))

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def encode_src(self, lines: Iterable[str]) -> List[List[int]]:
        return self.src.encode([escape(l) for l in lines])

    def encode_tgt(self, lines: Iterable[str]) -> List[List[int]]:
        return self.tgt.encode([escape(l) for l in lines])

    def decode_tgt(self, ids: Iterable[Sequence[int]]) -> List[str]:
        return [unescape(self.tgt.decode(list(x))) for x in ids]

    def tgt_pieces(self, ids: Sequence[int]) -> List[str]:
        return [self.tgt.id_to_piece(i) for i in ids]

    def state(self) -> dict:
        joint = self.tgt_proto == self.src_proto
        return {"src": self.src_proto, "tgt": None if joint else self.tgt_proto}

    @classmethod
    def from_state(cls, state: dict) -> "Tokenizer":
        return cls(state["src"], state["tgt"])
