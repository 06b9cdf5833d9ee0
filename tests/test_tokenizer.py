"""Tokenizer: exact round trips (unseen characters too), fixed special ids, tiny vocabularies."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seq2seq.config import TokenizerConfig
from seq2seq.errors import UserError
from seq2seq.data.tokenizer import BOS, EOS, PAD, UNK, Tokenizer, escape, unescape

TRAIN = ["the cat sat on the mat", "a dog ran in the park", "die Katze saß auf der Matte",
         "ein Hund lief im Park", "1 2 3 4 5"] * 4

NASTY = [
    "", " ", "  two  spaces  ", "\ttab", "trailing ", " leading",
    "unseen: ü é ß 日本語 🎉 👩‍👩‍👧",  # characters the training text never had
    "a\u0301\u0302 e\u0308",  # combining marks
    "שלום עולם مرحبا",  # right-to-left
    "\u200f\u200e\u202e rtl marks",
    "\x00\x01\x07\x1b[31m red \x7f",  # control characters
    "x" * 5000,  # a very long token
    "\u2581 lower one eighth block \u2581\u2581",  # sentencepiece's own space symbol
    "\ue000 \ue000\ue001 \ue001",  # our escape mark, alone and in pairs
    "<s> </s> <unk> <pad>",  # special pieces as text
    "\ufeffBOM", "\r", "a\x85b\u2028c\u2029d",
]


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(TRAIN, TRAIN, TokenizerConfig(vocab_size=300))


def round_trip(tok, text):
    return tok.decode_tgt(tok.encode_tgt([text]))[0]


@pytest.mark.parametrize("text", NASTY, ids=range(len(NASTY)))
def test_round_trip_is_exact(tok, text):
    assert round_trip(tok, text) == text
    assert tok.decode_tgt(tok.encode_src([text]))[0] == text  # joint model: same pieces


def test_unseen_characters_are_bytes_not_unk(tok):
    ids = tok.encode_src(["漢字 🎉"])[0]
    assert UNK not in ids
    assert all(i > EOS for i in ids)


def test_special_ids_are_fixed(tok):
    for sp in (tok.src, tok.tgt):
        assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (PAD, UNK, BOS, EOS)
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_vocab_size_larger_than_the_data_supports(model_type):
    lines = ["a b", "b a", "a a b"]
    tok = Tokenizer.train(lines, lines, TokenizerConfig(vocab_size=50_000, model_type=model_type))
    assert 256 < tok.src_vocab_size < 50_000  # byte pieces plus what the data has
    assert round_trip(tok, "a b c ü") == "a b c ü"


def test_vocab_size_smaller_than_the_characters_is_raised_to_the_minimum():
    lines = ["abcdefghij", "klmnopqrst"]
    tok = Tokenizer.train(lines, lines, TokenizerConfig(vocab_size=8))
    assert round_trip(tok, "abc tsr") == "abc tsr"


def test_separate_models_and_state_round_trip():
    src, tgt = ["a b c", "c b a"], ["x y z", "z y x"]
    tok = Tokenizer.train(src, tgt, TokenizerConfig(vocab_size=300, joint=False))
    assert tok.src_proto != tok.tgt_proto
    again = Tokenizer.from_state(tok.state())
    assert again.encode_src(["a b"]) == tok.encode_src(["a b"])
    assert again.encode_tgt(["x y"]) == tok.encode_tgt(["x y"])
    joint = Tokenizer.train(src, tgt, TokenizerConfig(vocab_size=300))
    assert joint.state()["tgt"] is None  # stored once


def test_training_lines_longer_than_sentencepiece_accepts():
    lines = ["word " * 3000, "x" * 20_000]  # both over sentencepiece's 4192-byte default
    tok = Tokenizer.train(lines, lines, TokenizerConfig(vocab_size=300))
    assert round_trip(tok, lines[1]) == lines[1]


def test_blank_training_text_is_a_clear_error():
    with pytest.raises(UserError, match="empty or blank"):
        Tokenizer.train(["", "  "], ["", " "], TokenizerConfig())


def test_lone_surrogates_become_replacement_characters(tok):
    assert round_trip(tok, "a\ud800b") == "a\ufffdb"


def test_escape_is_inverted_by_unescape():
    for text in NASTY:
        assert unescape(escape(text)) == text
    assert unescape("\ue000") == "\ue000"  # a mark the model emitted alone stays


# Combining marks, RTL, emoji, control characters (all of unicode but surrogates), long tokens.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40) | \
    st.builds(lambda c, n: c * n, st.characters(blacklist_categories=("Cs",)),
              st.integers(100, 3000))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT)
def test_round_trip_property(tok, text):
    assert round_trip(tok, text) == text


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=200))
def test_random_bytes_decoded_with_replacement_round_trip(tok, raw):
    text = raw.decode("utf-8", errors="replace")
    assert round_trip(tok, text) == text


# -- symbols and levels (issue 18) --------------------------------------------------------

# symbols of letters and digits joined by underscores, e.g. I_TURN_LEFT, A1_B2, x_9 (with the
# leading "▁" they fit the default max_piece_length of 16)
PART = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=1,
               max_size=4)
SYMBOL = st.lists(PART, min_size=2, max_size=3).map("_".join).filter(lambda s: len(s) <= 15)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(symbols=st.lists(SYMBOL, min_size=1, max_size=12, unique=True), seed=st.integers(0, 99))
def test_underscore_joined_symbols_stay_one_piece_under_the_defaults(symbols, seed):
    import random

    rng = random.Random(seed)
    lines = [" ".join(rng.choice(symbols) for _ in range(rng.randint(1, 8))) for _ in range(60)]
    tok = Tokenizer.train(lines, lines, TokenizerConfig())
    for sym in symbols:
        assert len(tok.encode_tgt([sym])[0]) == 1, (sym, tok.tgt_pieces(tok.encode_tgt([sym])[0]))
        assert tok.tgt_pieces(tok.encode_tgt([sym])[0]) == ["\u2581" + sym]  # "_" shown as is
    line = " ".join(symbols)
    assert len(tok.encode_tgt([line])[0]) == len(symbols)
    assert round_trip(tok, line) == line


def test_without_underscore_as_letter_sentencepiece_cuts_at_every_underscore():
    lines = ["I_TURN_LEFT I_JUMP", "I_JUMP I_TURN_LEFT I_TURN_LEFT"] * 30
    tok = Tokenizer.train(lines, lines, TokenizerConfig(underscore_as_letter=False))
    assert len(tok.encode_tgt(["I_TURN_LEFT"])[0]) >= 4  # ▁I _ TURN _ LEFT, or finer
    assert round_trip(tok, "I_TURN_LEFT x_y") == "I_TURN_LEFT x_y"


def test_old_tokenizer_state_keeps_its_behaviour():
    lines = ["I_TURN_LEFT I_JUMP"] * 20
    old = Tokenizer.train(lines, lines, TokenizerConfig(underscore_as_letter=False)).state()
    del old["underscore_as_letter"]  # a checkpoint from before the option
    tok = Tokenizer.from_state(old)
    assert not tok.underscore_as_letter
    assert round_trip(tok, "I_TURN_LEFT ꞏ") == "I_TURN_LEFT ꞏ"


def test_user_defined_symbols_are_one_piece_wherever_they_occur():
    lines = ["a b c <sep> d e", "x<sep>y z"] * 10
    cfg = TokenizerConfig(user_defined_symbols=["<sep>", "MY_TAG"])
    tok = Tokenizer.train(lines, lines, cfg)
    for text in ("q<sep>q", "MY_TAG", "<sep>MY_TAG<sep>"):
        pieces = tok.tgt_pieces(tok.encode_tgt([text])[0])
        assert "<sep>" in pieces or "MY_TAG" in pieces
        assert round_trip(tok, text) == text


@pytest.mark.parametrize("symbols", [["<s>"], ["</s>", "x"], ["<unk>"], ["a b"], [""]])
def test_user_defined_symbols_that_cannot_be_one_piece_are_refused(symbols):
    from seq2seq.config import ConfigError

    with pytest.raises(ConfigError, match="tokenizer.user_defined_symbols"):
        TokenizerConfig(user_defined_symbols=symbols)


@pytest.mark.parametrize("text", ["ꞏ", "a_ꞏ_b", "\ue000\ue002", "ꞏ\ue000ꞏ_", "__init__"])
def test_the_letter_that_stands_for_underscore_round_trips(tok, text):
    assert unescape(escape(text, True), True) == text
    assert round_trip(tok, text) == text


@pytest.fixture(scope="module", params=["word", "char"])
def level(request):
    return Tokenizer.train(TRAIN, TRAIN, TokenizerConfig(model_type=request.param,
                                                         vocab_size=300))


@pytest.mark.parametrize("text", NASTY + ["the cat", "the  cat", " the cat ", "unseen cat",
                                          "the unseen", "I_TURN_LEFT"], ids=range(len(NASTY) + 6))
def test_word_and_char_levels_round_trip_exactly(level, text):
    assert round_trip(level, text) == text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT | st.lists(st.sampled_from(" ".join(TRAIN).split() + ["", " ", "new"]))
       .map(" ".join))
def test_word_and_char_levels_round_trip_property(level, text):
    assert round_trip(level, text) == text


def test_word_level_keeps_words_whole():
    tok = Tokenizer.train(TRAIN, TRAIN, TokenizerConfig(model_type="word"))
    assert tok.tgt_pieces(tok.encode_tgt(["the Katze saß"])[0]) == ["▁the", "▁Katze", "▁saß"]
    char = Tokenizer.train(TRAIN, TRAIN, TokenizerConfig(model_type="char"))
    assert len(char.encode_tgt(["the cat"])[0]) == len("the cat") + 1  # "▁" before the first


def test_attention_labels_show_the_sources_underscores():
    """Attention plots (``translate``) and the server's attention (``explain``) label the
    source with its pieces as the user wrote them: ``_``, never the letter that stands for it
    inside sentencepiece."""
    import torch

    from seq2seq.config import DecodeConfig, ModelConfig
    from seq2seq.decoding.search import translate
    from seq2seq.deploy.batcher import explain
    from seq2seq.model.seq2seq import Seq2Seq

    lines = ["I_TURN_LEFT I_WALK", "I_WALK I_JUMP I_TURN_LEFT"] * 10
    tok = Tokenizer.train(lines, lines, TokenizerConfig(vocab_size=40))
    torch.manual_seed(0)
    model = Seq2Seq.from_config(ModelConfig(embedding_dim=8, hidden_size=8, dropout=0.0),
                                tok.src_vocab_size, tok.tgt_vocab_size, PAD).eval()
    src = ["I_TURN_LEFT I_WALK"]
    maps = translate(model, tok, src, DecodeConfig(max_len_a=0, max_len_b=3),
                     return_attention=True).attention
    _, served = explain(model, tok, src, ["I_WALK"], max_src_len=100)
    for labels in (maps[0][0], served[0]["source"]):
        assert "".join(labels) == "\u2581I_TURN_LEFT\u2581I_WALK", labels
