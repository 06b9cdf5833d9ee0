"""SentencePiece pieces (BPE, unigram, whole words or characters): trained on the training
split, stored inside the checkpoint.

Fixed ids (the same in every model this toolkit trains):

    PAD = 0   padding; never predicted (masked out of the loss)
    UNK = 1   unknown piece (rare: byte fallback spells unseen characters as UTF-8 bytes)
    BOS = 2   first decoder input
    EOS = 3   end of a target sentence

Normalization is ``identity`` with ``remove_extra_whitespaces=False`` and byte fallback, so that
``decode(encode(x)) == x`` for any text (NFKC normalization and whitespace folding would change
about 0.3% of Multi30k lines and print unseen characters as `` ⁇ ``), at every level
(``model_type``: ``bpe``, ``unigram``, ``word``, ``char``). Three characters need help, by
escapes on the way in (see :func:`escape`):

- sentencepiece writes spaces as ``▁`` (U+2581), so a ``▁`` in the text would come back as a
  space: it is escaped to a private-use pair. (A ``▁`` that comes out of decoding is therefore
  always a space: the ``word`` model spells an unseen word, its leading space included, as bytes.)
- ``_`` is not a letter to sentencepiece (Unicode script "Common"), which never lets a piece
  cross a script boundary, so ``I_TURN_LEFT`` would be cut at every ``_``: with
  ``underscore_as_letter`` (the default) ``_`` is written as ``ꞏ`` (U+A78F, a letter of the
  Latin script that text practically never holds; itself escaped), and symbols of Latin letters,
  digits and underscores can be one piece.
- lone surrogates (which only Python strings can hold, never UTF-8 text) become U+FFFD.
"""

import io
import re
from typing import Iterable, List, Optional, Sequence

import sentencepiece as spm

from seq2seq.config import TokenizerConfig
from seq2seq.errors import UserError, first_line

PAD, UNK, BOS, EOS = 0, 1, 2, 3
_BYTE_PIECES = 256
_MAX_TRAIN_CHARS = 4096  # longer lines are cut to this for training the tokenizer (only)
_ESC = "\ue000"  # private use: starts an escape; "\ue000\ue001" is "▁", "\ue000\ue000" is itself
_SPACE = "\u2581"  # sentencepiece's space symbol
_LETTER = "\ua78f"  # "_" with underscore_as_letter: a letter of the Latin script ("\ue000\ue002": itself)
_ESCAPES = {False: str.maketrans({_ESC: _ESC + _ESC, _SPACE: _ESC + "\ue001"}),
            True: str.maketrans({_ESC: _ESC + _ESC, _SPACE: _ESC + "\ue001",
                                 _LETTER: _ESC + "\ue002", "_": _LETTER})}
_UNESCAPES = {False: re.compile(_ESC + "[\ue000\ue001]"),
              True: re.compile(_ESC + "[\ue000-\ue002]|" + _LETTER)}
_BACK = {_ESC: _ESC, "\ue001": _SPACE, "\ue002": _LETTER, _LETTER: "_"}  # by an escape's last character
_SURROGATES = re.compile("[\ud800-\udfff]")


def escape(text: str, underscore_as_letter: bool = False) -> str:
    """Text as sentencepiece sees it: ``▁`` (its space symbol) and the escape mark escaped,
    lone surrogates replaced by U+FFFD; with ``underscore_as_letter``, ``_`` written as the
    letter ``ꞏ`` (and ``ꞏ`` escaped)."""
    if _ESC in text or _SPACE in text or (underscore_as_letter and ("_" in text
                                                                 or _LETTER in text)):
        text = text.translate(_ESCAPES[underscore_as_letter])  # (slow: only when needed)
    return _SURROGATES.sub("\ufffd", text)


def unescape(text: str, underscore_as_letter: bool = False) -> str:
    """The inverse of :func:`escape`; an escape mark the model emitted alone is kept as is."""
    if _ESC not in text and not (underscore_as_letter and _LETTER in text):
        return text
    return _UNESCAPES[underscore_as_letter].sub(lambda m: _BACK[m.group()[-1]], text)


def train_model(lines: Sequence[str], cfg: TokenizerConfig) -> bytes:
    """Train a sentencepiece model on ``lines`` as ``cfg`` says and return its serialized proto.

    A ``vocab_size`` larger than the data can fill is not an error (``hard_vocab_limit=False``
    gives a smaller vocabulary); one too small to hold every character (and the 256 byte
    pieces of byte fallback) is raised to the minimum.
    """
    # sentencepiece skips lines over max_sentence_length bytes: cut them instead (4 bytes/char)
    lines = [escape(l, cfg.underscore_as_letter)[:_MAX_TRAIN_CHARS] for l in lines if l.strip()]
    if not lines:
        raise UserError("cannot train a tokenizer: the training text is empty or blank")
    chars = set()
    for l in lines:
        chars.update(l)
    symbols = [escape(x, cfg.underscore_as_letter) for x in cfg.user_defined_symbols]
    minimum = 4 + len(chars) + len(symbols) + (_BYTE_PIECES if cfg.byte_fallback else 0) + 1
    writer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=writer,
            vocab_size=max(cfg.vocab_size, minimum), model_type=cfg.model_type,
            hard_vocab_limit=False, character_coverage=cfg.character_coverage,
            byte_fallback=cfg.byte_fallback, split_digits=cfg.split_digits,
            split_by_unicode_script=cfg.split_by_unicode_script,
            split_by_number=cfg.split_by_number, split_by_whitespace=cfg.split_by_whitespace,
            max_sentencepiece_length=cfg.max_piece_length, user_defined_symbols=symbols,
            pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            max_sentence_length=4 * _MAX_TRAIN_CHARS, input_sentence_size=2_000_000,
            shuffle_input_sentence=True, minloglevel=2, num_threads=2)
    except RuntimeError as e:  # e.g. a user-defined symbol that is also a special piece
        raise UserError(f"sentencepiece cannot train the tokenizer as configured: "
                        f"{first_line(e)}") from None
    return writer.getvalue()


class Tokenizer:
    """Source and target sentencepiece models (the same model when trained jointly).

    ``underscore_as_letter``: how the models were trained (see the module docstring); a
    checkpoint written before the option existed has none, and means False."""

    def __init__(self, src_proto: bytes, tgt_proto: Optional[bytes] = None,
                 underscore_as_letter: bool = False) -> None:
        self.src_proto = src_proto
        self.tgt_proto = tgt_proto if tgt_proto is not None else src_proto
        self.underscore_as_letter = underscore_as_letter
        self.src = spm.SentencePieceProcessor(model_proto=self.src_proto)
        self.tgt = spm.SentencePieceProcessor(model_proto=self.tgt_proto)

    @classmethod
    def train(cls, src_lines: Sequence[str], tgt_lines: Sequence[str], cfg: TokenizerConfig
              ) -> "Tokenizer":
        """Train as ``cfg`` says (one model for both sides when ``cfg.joint``)."""
        if cfg.joint:
            return cls(train_model(list(src_lines) + list(tgt_lines), cfg), None,
                       cfg.underscore_as_letter)
        return cls(train_model(src_lines, cfg), train_model(tgt_lines, cfg),
                   cfg.underscore_as_letter)

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def encode_src(self, lines: Iterable[str]) -> List[List[int]]:
        return self.src.encode([escape(l, self.underscore_as_letter) for l in lines])

    def encode_tgt(self, lines: Iterable[str]) -> List[List[int]]:
        return self.tgt.encode([escape(l, self.underscore_as_letter) for l in lines])

    def decode_tgt(self, ids: Iterable[Sequence[int]]) -> List[str]:
        return [self._text(self.tgt.decode(list(x))) for x in ids]

    def _text(self, decoded: str) -> str:
        """What sentencepiece decoded, as text. A ``▁`` left in it was spelled as bytes (the
        ``word`` model spells an unseen word, its leading ``▁`` included, as bytes): it is a
        space, or, at the start, the space sentencepiece adds before the first word."""
        if _SPACE in decoded:
            decoded = decoded[1:] if decoded.startswith(_SPACE) else decoded
            decoded = decoded.replace(_SPACE, " ")
        return unescape(decoded, self.underscore_as_letter)

    def src_pieces(self, ids: Sequence[int]) -> List[str]:
        """Source pieces for display (attention plots): ``_`` shown as itself."""
        return [unescape(self.src.id_to_piece(i), self.underscore_as_letter) for i in ids]

    def tgt_pieces(self, ids: Sequence[int]) -> List[str]:
        """Target pieces for display."""
        return [unescape(self.tgt.id_to_piece(i), self.underscore_as_letter) for i in ids]

    def state(self) -> dict:
        joint = self.tgt_proto == self.src_proto
        return {"src": self.src_proto, "tgt": None if joint else self.tgt_proto,
                "underscore_as_letter": self.underscore_as_letter}

    @classmethod
    def from_state(cls, state: dict) -> "Tokenizer":
        return cls(state["src"], state["tgt"], state.get("underscore_as_letter", False))
