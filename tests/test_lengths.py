"""Length limits learned from the data (seq2seq.data.lengths): the output limit covers every training
target, drops for length are loud (over 1% stops the run), outputs cut short are counted and
reported in the log, metrics.jsonl and evaluate."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.data import toy
from seq2seq.data.batching import IdPairs, encode_pairs
from seq2seq.config import (Config, DataConfig, DecodeConfig, ModelConfig, TokenizerConfig,
                            TrainConfig)
from seq2seq.data.corpus import InMemoryCorpus
from seq2seq.decoding.search import greedy
from seq2seq.errors import UserError
from seq2seq.decoding.evaluate import evaluate_checkpoint
from seq2seq.data.lengths import (FALLBACK, OutputLimit, count_truncated, filter_training,
                             fit_output_limit, output_lengths, resolve)
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.training.validation import validate
from seq2seq.data.tokenizer import EOS, PAD, Tokenizer
from seq2seq.training.loop import train

LENGTHS = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), min_size=1, max_size=60)
TINY = ModelConfig(embedding_dim=8, hidden_size=8, dropout=0.0)


@settings(max_examples=300, deadline=None)
@given(pairs=LENGTHS)
def test_the_learned_output_limit_covers_every_training_target(pairs):
    src, tgt = zip(*pairs)
    limit = fit_output_limit(src, tgt)
    for s, t in pairs:
        assert limit.at(s) >= t + 1  # the target and its EOS fit
    # search computes the same limits (in tensors) as OutputLimit.at
    lens = torch.tensor([max(1, s) for s in src])
    assert output_lengths(lens, limit.a, limit.b).tolist() == [limit.at(s) for s in src]


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 40), ratio=st.sampled_from([0.5, 1, 2, 3.7]))
def test_the_learned_output_limit_follows_the_data(n, ratio):
    # targets `ratio` times as long as their sources: the limit is that line, 10% up, + 2 or 3
    src = list(range(1, n + 1))
    tgt = [int(ratio * s) for s in src]
    limit = fit_output_limit(src, tgt)
    for s, t in zip(src, tgt):
        assert t + 1 <= limit.at(s) <= 1.1 * (t + 1) + 0.012 * s + 4 + 1.1 * ratio


def test_the_output_limit_of_a_config_and_of_the_data():
    learned = OutputLimit(4.2, 7)
    assert resolve(DecodeConfig(), learned) == learned
    assert resolve(DecodeConfig(), None) == FALLBACK
    assert resolve(DecodeConfig(max_len_b=3), learned) == OutputLimit(4.2, 3)
    assert resolve(DecodeConfig(max_len_a=1.0, max_len_b=0), learned) == OutputLimit(1.0, 0)


def test_commands_corpus_symbols_are_pieces_and_the_limit_covers_their_targets():
    dd = toy.commands(seed=3, train_size=400, valid_size=20, test_size=20)
    cfg = Config(train=TrainConfig(batch_size=16))
    corpus = InMemoryCorpus(cfg, None, dd, log=lambda m: None)
    limit = corpus.output_limit
    assert len(corpus.train.src) == 400  # nothing dropped
    for src, tgt, text in zip(corpus.train.src, corpus.train.tgt, corpus.train.tgt_text):
        assert len(tgt) == len(text.split())  # one piece per action symbol
        assert limit.at(len(src)) >= len(tgt) + 1


def ids(src_lens, tgt_lens):
    src = [[5] * n for n in src_lens]
    tgt = [[6] * n for n in tgt_lens]
    return IdPairs(src, tgt, [""] * len(src), [""] * len(tgt))


@settings(max_examples=100, deadline=None)
@given(pairs=LENGTHS, max_len=st.none() | st.integers(1, 300))
def test_the_length_filter_keeps_what_fits_and_counts_the_rest(pairs, max_len):
    data = ids(*zip(*pairs))
    try:
        kept, lengths = filter_training(data, max_len)
    except UserError as e:  # a learned limit dropping over 1%, or nothing left
        assert max_len is None and "data.max_len" in str(e) or "no training pair" in str(e)
        return
    assert all(0 < len(s) <= lengths.max_len and 0 < len(t) <= lengths.max_len
               for s, t in zip(kept.src, kept.tgt))
    assert len(kept.src) + lengths.empty + lengths.long == len(pairs)
    assert lengths.learned == (max_len is None)
    if max_len is None:
        assert lengths.long <= 0.01 * len(pairs) and lengths.max_len >= 256
    assert (lengths.warning() is None) == (lengths.long == 0)


def test_a_learned_limit_drops_at_most_one_percent_else_it_stops_the_run():
    kept, lengths = filter_training(ids([3] * 198 + [400, 500], [4] * 200), None)
    assert lengths.long == 2 and "2 of 200 training pairs (1.00%)" in lengths.warning()
    data = ids([3] * 197 + [400, 500, 600], [4] * 200)
    with pytest.raises(UserError) as e:
        filter_training(data, None)
    msg = str(e.value)
    assert "3 of 200 training pairs (1.5%) are longer than 256 pieces" in msg
    assert "data.max_len=600" in msg and "\n" not in msg  # one line: the setting that keeps all
    kept, lengths = filter_training(data, 100)  # set in the config: accepted, with a warning
    assert len(kept.src) == 197 and "3 of 200 training pairs (1.50%)" in lengths.warning()


def write_data(tmp_path, train_rows, valid_rows):
    files = {}
    for name, rows in (("train", train_rows), ("validation", valid_rows)):
        p = tmp_path / f"{name}.jsonl"
        p.write_text("".join(json.dumps({"src": a, "tgt": b}) + "\n" for a, b in rows))
        files[name] = str(p)
    return files


def test_over_one_percent_dropped_stops_training_before_it_starts(tmp_path, run_cli):
    short = [("a b c", "c b a")] * 95 + [("b c", "c b")] * 100
    long = [("a " * 300, "b " * 300)] * 5  # 2.5% of the pairs, over 256 pieces
    files = write_data(tmp_path, short + long, short[:5])
    (tmp_path / "c.yaml").write_text(json.dumps({
        "data": {"path": "json", "data_files": files, "test_split": None},
        "model": {"embedding_dim": 8, "hidden_size": 8}, "train": {"max_steps": 2}}))
    p = run_cli("train", "--config", "c.yaml", "--out", "run", "--no-progress", check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    err = p.stderr.strip().splitlines()[-1]
    assert err.startswith("seq2seq train: error: 5 of 200 training pairs (2.5%) are longer "
                          "than 256 pieces")
    assert "data.max_len=301" in err  # the setting that keeps them all (300 words + "▁")
    assert not (tmp_path / "run" / "last.pt").exists()  # stopped before training
    p = run_cli("train", "--config", "c.yaml", "--set", "data.max_len=20", "--out", "run",
                "--no-progress")
    assert "warning: 5 of 200 training pairs (2.50%) are dropped" in p.stderr
    assert (tmp_path / "run" / "last.pt").exists()


def tiny_model(tok, eos_bias):
    torch.manual_seed(0)
    model = Seq2Seq.from_config(TINY, tok.src_vocab_size, tok.tgt_vocab_size, PAD).eval()
    with torch.no_grad():
        model.decoder.out.bias[EOS] = eos_bias  # -1e4: never ends; 1e4: ends at once
    return model


@pytest.mark.parametrize("eos_bias", [-1e4, 1e4, 0.0])
def test_truncated_validation_outputs_are_counted(eos_bias):
    lines = [" ".join("abcdefg"[: 1 + i % 7]) for i in range(40)]
    tok = Tokenizer.train(lines, lines, Config().tokenizer)
    data = encode_pairs(tok, (lines, lines))
    model = tiny_model(tok, eos_bias)
    cfg = Config(decode=DecodeConfig(max_len_a=1.0, max_len_b=2))
    rec = validate(model, data, tok, cfg, "cpu")
    limit = OutputLimit(1.0, 2)
    hyps = [greedy(model, *collate1(s))[0][0] for s in data.src]
    expected = count_truncated([len(s) for s in data.src], [len(h) for h in hyps], limit)
    assert rec["valid_truncated"] == expected
    assert expected == {-1e4: len(lines), 1e4: 0}.get(eos_bias, expected)
    if expected > 0.01 * len(lines):
        assert f"{expected} of {len(lines)} validation outputs" in rec["valid_warning"]
        assert "decode.max_len_a" in rec["valid_warning"]
    else:
        assert "valid_warning" not in rec


def collate1(src):
    return torch.tensor([src]), torch.tensor([len(src)]), 1.0, 2


def test_truncation_is_reported_in_the_log_metrics_and_evaluate(tmp_path, capsys):
    from datasets import Dataset, DatasetDict

    rows = {"src": ["a b c d e f"] * 40, "tgt": ["f e d c b a"] * 40}
    dd = DatasetDict({"train": Dataset.from_dict(rows), "validation": Dataset.from_dict(rows),
                      "test": Dataset.from_dict(rows)})
    cfg = Config(model=TINY, train=TrainConfig(max_steps=1, batch_size=8),
                 decode=DecodeConfig(max_len_a=0.0, max_len_b=3),  # too short for any target
                 data=DataConfig())
    train(cfg, tmp_path / "run", dataset=dd, progress=False)
    log = capsys.readouterr().err
    assert "warning: 40 of 40 validation outputs (100.0%) stopped at the output length limit " \
           "(0 * source pieces + 3)" in log
    rec = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["valid_truncated"] == 40 and "valid_warning" in rec
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert set(ckpt["output_limit"]) == {"a", "b"}  # the learned one, stored
    ev = evaluate_checkpoint(tmp_path / "run", dataset=dd, device="cpu")
    assert ev.scores["truncated"] == 40 and "40 of 40 test outputs" in ev.scores["warning"]
    learned = OutputLimit(**ckpt["output_limit"])
    assert learned.at(6) >= 7  # the learned limit fits the targets: 6 pieces and EOS
    ev = evaluate_checkpoint(tmp_path / "run", dataset=dd, device="cpu",
                             decode={"max_len_b": learned.b, "max_len_a": learned.a})
    assert ev.scores["output_limit"] == learned.describe()


def test_a_checkpoint_from_before_the_new_keys_loads_and_decodes_as_before(tmp_path):
    from datasets import Dataset, DatasetDict

    from seq2seq.load import load_model
    from seq2seq.training.checkpoint import save
    from seq2seq.decoding.search import translate

    rows = {"src": ["a_b c d", "c d a_b"] * 20, "tgt": ["d c a_b", "a_b d c"] * 20}
    dd = DatasetDict({"train": Dataset.from_dict(rows), "validation": Dataset.from_dict(rows)})
    cfg = Config(model=TINY, train=TrainConfig(max_steps=1, batch_size=8),
                 data=DataConfig(test_split=None),
                 tokenizer=TokenizerConfig(underscore_as_letter=False, split_by_number=True))
    train(cfg, tmp_path / "run", dataset=dd, progress=False)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    # what an older version wrote: no new tokenizer keys, explicit output limits, no learned one
    for k in ("underscore_as_letter", "split_by_number", "split_by_unicode_script",
              "split_by_whitespace", "max_piece_length", "user_defined_symbols"):
        del ckpt["config"]["tokenizer"][k]
    ckpt["config"]["decode"].update(max_len_a=1.5, max_len_b=10)
    ckpt["config"]["data"]["max_len"] = 100
    del ckpt["output_limit"], ckpt["tokenizer"]["underscore_as_letter"]
    del ckpt["format"], ckpt["version"]
    save(ckpt, tmp_path / "old.pt")
    model, tok, old_cfg = load_model(tmp_path / "old.pt")
    assert not tok.underscore_as_letter and not old_cfg.tokenizer.underscore_as_letter
    assert old_cfg.tokenizer.split_by_number  # what it was trained with
    assert (old_cfg.decode.max_len_a, old_cfg.decode.max_len_b) == (1.5, 10)
    new_model, new_tok, _ = load_model(tmp_path / "run" / "last.pt")
    assert tok.encode_src(["a_b c"]) == new_tok.encode_src(["a_b c"])  # the same pieces
    assert translate(model, tok, ["a_b c d"]) == translate(new_model, new_tok, ["a_b c d"],
                                                           DecodeConfig(max_len_a=1.5,
                                                                        max_len_b=10))
