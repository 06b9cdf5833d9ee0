"""Data: reading the three layouts, the length filter, length-bucketed batches."""

import json
import random

import pytest
import torch

from seq2seq.config import DataConfig
from seq2seq.data.batching import IdPairs, bucket_batches, collate, filter_length, padding_fraction
from seq2seq.data.readers import load_splits, read_lines
from seq2seq.errors import UserError
from seq2seq.data.tokenizer import BOS, EOS, PAD


def lengths(n=500, seed=0):
    rng = random.Random(seed)
    src = [rng.randint(1, 60) for _ in range(n)]
    return src, [max(1, s + rng.randint(-5, 5)) for s in src]


# -- bucketing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(batch_size=32), dict(batch_size=7),
                                dict(batch_size=1, batch_tokens=400)], ids=["32", "7", "tokens"])
def test_every_index_exactly_once(kw):
    src, tgt = lengths()
    batches = bucket_batches(src, tgt, seed=3, **kw)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(src)))
    assert all(batches)


def test_batch_size_respected():
    src, tgt = lengths(500)
    batches = bucket_batches(src, tgt, 32, seed=1)
    assert all(len(b) <= 32 for b in batches)
    assert sum(len(b) == 32 for b in batches) >= len(batches) - 1  # only one partial batch


def test_token_budget_respected():
    src, tgt = lengths(500)
    budget = 300
    batches = bucket_batches(src, tgt, 1, batch_tokens=budget, seed=1)
    for b in batches:  # padded size B * max(S, T) (+1 for BOS/EOS), the budget's unit
        longest = max(max(src[i], tgt[i]) + 1 for i in b)
        assert len(b) * longest <= budget or len(b) == 1


def test_a_sentence_longer_than_the_budget_gets_its_own_batch():
    batches = bucket_batches([5, 500, 6], [5, 500, 6], 1, batch_tokens=64)
    assert [1] in batches and sorted(i for b in batches for i in b) == [0, 1, 2]


def test_bucketing_pads_less_than_random_batches():
    src, tgt = lengths(1000)
    bucketed = bucket_batches(src, tgt, 32, seed=1)
    order = list(range(len(src)))
    random.Random(1).shuffle(order)
    unbucketed = [order[k:k + 32] for k in range(0, len(order), 32)]
    pf_b, pf_u = padding_fraction(tgt, bucketed), padding_fraction(tgt, unbucketed)
    assert 0 <= pf_b < pf_u / 3


def test_padding_fraction():
    assert padding_fraction([2, 4], [[0, 1]]) == pytest.approx(0.25)  # 6 real of 8
    assert padding_fraction([3, 3], [[0], [1]]) == 0.0


def test_shuffle_is_deterministic_with_the_seed():
    src, tgt = lengths()
    a = bucket_batches(src, tgt, 16, seed=11)
    assert a == bucket_batches(src, tgt, 16, seed=11)
    b = bucket_batches(src, tgt, 16, seed=12)  # another epoch (the loop uses seed*100003+epoch)
    assert a != b
    unshuffled = bucket_batches(src, tgt, 16)  # no seed: length order
    firsts = [max(src[i] for i in batch) for batch in unshuffled]
    assert firsts == sorted(firsts)


def test_collate_shapes_and_specials():
    b = collate([[5, 6, 7], [8]], [[9], [10, 11]], [4, 2])
    assert b.src.tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert b.src_len.tolist() == [3, 1]
    assert b.tgt_in.tolist() == [[BOS, 9, PAD], [BOS, 10, 11]]
    assert b.tgt_out.tolist() == [[9, EOS, PAD], [10, 11, EOS]]
    assert b.index.tolist() == [4, 2]
    assert int((b.tgt_out != PAD).sum()) == 5  # target tokens, EOS included
    assert b.src.dtype == torch.long


def test_length_filter_reports_drops():
    data = IdPairs([[1], [1] * 5, [], [1, 2]], [[1], [1], [1], [1] * 9],
                   ["a", "b", "c", "d"], ["A", "B", "C", "D"])
    kept, dropped = filter_length(data, 4)
    assert dropped == 3  # too long on the source side, empty, too long on the target side
    assert kept.src_text == ["a"] and kept.tgt_text == ["A"]


# -- reading --------------------------------------------------------------------------------

def test_read_lines(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"a\r\nb\n\nc")  # CRLF, an empty line, no final newline
    assert read_lines(p) == ["a", "b", "", "c"]
    p.write_bytes(b"ok\nbad \xff\n")
    with pytest.raises(UserError, match=r"x.txt line 2: bytes that are not UTF-8"):
        read_lines(p)
    assert read_lines(p, "replace") == ["ok", "bad \ufffd"]
    with pytest.raises(UserError, match="does not exist"):
        read_lines(tmp_path / "nope.txt")
    with pytest.raises(UserError, match="is a folder"):
        read_lines(tmp_path)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_three_layouts_give_the_same_pairs(tmp_path):
    src, tgt = ["ein Hund", "zwei Katzen"], ["a dog", "two cats"]
    cols = write_jsonl(tmp_path / "cols.jsonl", [{"de": s, "en": t} for s, t in zip(src, tgt)])
    trans = write_jsonl(tmp_path / "tr.jsonl",
                        [{"translation": {"de": s, "en": t}} for s, t in zip(src, tgt)])
    (tmp_path / "t.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    (tmp_path / "t.en").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    for path, files in [("json", {"train": cols}), ("json", {"train": trans}),
                        ("text", {"train": [str(tmp_path / "t.de"), str(tmp_path / "t.en")]})]:
        d = DataConfig(path=path, data_files=files, src="de", tgt="en")
        assert load_splits(d, ["train"])["train"] == (src, tgt)


def test_reading_errors_name_the_problem(tmp_path):
    (tmp_path / "a.de").write_text("1\n2\n3\n")
    (tmp_path / "a.en").write_text("1\n2\n")
    d = DataConfig(path="text", data_files={"train": [str(tmp_path / "a.de"),
                                                      str(tmp_path / "a.en")]})
    with pytest.raises(UserError, match=r"a.de has 3 lines but .*a.en has 2"):
        load_splits(d, ["train"])
    cols = write_jsonl(tmp_path / "c.jsonl", [{"de": "x", "en": "y"}])
    d = DataConfig(path="json", data_files={"train": cols}, src="de", tgt="fr")
    with pytest.raises(UserError, match=r"no column 'fr' \(columns: de, en\)"):
        load_splits(d, ["train"])
    with pytest.raises(UserError, match=r"no split 'test' \(it has: train\)"):
        load_splits(DataConfig(path="json", data_files={"train": cols}, src="de", tgt="en"),
                    ["test"])


def test_non_utf8_in_json_names_file_and_line_or_is_replaced(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"de": "gut", "en": "good"}\n{"de": "b\xf6se", "en": "evil"}\n')
    d = DataConfig(path="json", data_files={"train": str(p)}, src="de", tgt="en")
    with pytest.raises(UserError, match=r"bad.jsonl line 2: bytes that are not UTF-8"):
        load_splits(d, ["train"])
    assert load_splits(d, ["train"], errors="replace")["train"] == (
        ["gut", "b\ufffdse"], ["good", "evil"])
