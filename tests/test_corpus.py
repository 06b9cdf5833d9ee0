"""The training corpus, streamed (data.streaming) against in memory: every pair once per epoch,
lazily read, resumable, the same readers and errors, and a CLI run that trains from a stream."""

import itertools
import json
import random
from collections import Counter

import pytest
import torch

from seq2seq.config import Config, DataConfig, TrainConfig
from seq2seq.errors import UserError
from seq2seq.data.corpus import InMemoryCorpus, StreamedCorpus, chunks, load_corpus
from seq2seq.data.readers import stream_pairs
from seq2seq.data.tokenizer import PAD


def rows(n=120, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = [rng.choice("abcdefghij") for _ in range(rng.randint(2, 9))]
        out.append((" ".join(s), " ".join(reversed(s))))
    return out


def write_json(d, train, valid):
    for name, rs in (("train", train), ("valid", valid)):
        with open(d / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps({"src": a, "tgt": b}) + "\n" for a, b in rs)
    return {"train": str(d / "train.jsonl"), "validation": str(d / "valid.jsonl")}


def write_text(d, train, valid):
    files = {}
    for name, rs in (("train", train), ("validation", valid)):
        (d / f"{name}.src").write_text("".join(a + "\n" for a, _ in rs))
        (d / f"{name}.tgt").write_text("".join(b + "\n" for _, b in rs))
        files[name] = [str(d / f"{name}.src"), str(d / f"{name}.tgt")]
    return files


def config(path, files, chunk_size=32, streaming=True, **train):
    t = dict(batch_size=8, seed=5, max_steps=50)
    t.update(train)
    return Config(data=DataConfig(path=path, data_files=files, test_split=None,
                                  streaming=streaming, chunk_size=chunk_size, max_len=8),
                  train=TrainConfig(**t))


def pairs_of(batches):
    """The (source ids, target ids) of every real row of the batches, as a multiset."""
    out = Counter()
    for b in batches:
        for i in range(b.src.shape[0]):
            src = tuple(b.src[i, :int(b.src_len[i])].tolist())
            tgt = tuple(t for t in b.tgt_out[i].tolist() if t != PAD)
            out[src, tgt] += 1
    return out


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_epoch_holds_every_pair_once_like_the_in_memory_path(tmp_path, fmt):
    train, valid = rows(), rows(12, seed=1)
    files = (write_json if fmt == "json" else write_text)(tmp_path, train, valid)
    mem_cfg, stream_cfg = config(fmt, files, streaming=False), config(fmt, files)
    mem = load_corpus(mem_cfg, None, log=lambda m: None)
    stream = load_corpus(stream_cfg, mem.tokenizer, log=lambda m: None)
    assert isinstance(mem, InMemoryCorpus) and isinstance(stream, StreamedCorpus)
    expected = pairs_of(mem.epoch(0))
    got = pairs_of(stream.epoch(0))
    assert got == expected and sum(got.values()) == len(mem.train.src)  # length filter too
    assert len(mem.train.src) < len(train)  # the filter (max_len 8) dropped some
    assert stream.valid.src_text == [a for a, _ in valid]


def test_batches_are_bucketed_within_chunks_and_shuffled_per_epoch(tmp_path):
    files = write_json(tmp_path, rows(), rows(4, 1))
    cfg = config("json", files, chunk_size=40)
    data = StreamedCorpus(cfg, None, log=lambda m: None)
    e0 = [b.src.tolist() for b in data.epoch(0)]
    assert e0 == [b.src.tolist() for b in data.epoch(0)]  # deterministic
    assert e0 != [b.src.tolist() for b in data.epoch(1)]  # reshuffled each epoch
    # a batch never mixes chunks: its rows are all from one block of 40 consecutive pairs
    for b in data.epoch(0):
        assert b.index.max() < 40 and b.src.shape[0] <= 8


def test_start_skips_batches_as_a_resumed_run_does(tmp_path):
    files = write_json(tmp_path, rows(), rows(4, 1))
    cfg = config("json", files, chunk_size=30)
    data = StreamedCorpus(cfg, None, log=lambda m: None)
    full = [b.src.tolist() for b in data.epoch(2)]
    for start in (0, 3, 4, len(full) - 1, len(full)):
        assert [b.src.tolist() for b in data.epoch(2, start=start)] == full[start:]


def test_chunks_are_read_lazily():
    endless = ((str(i), str(i)) for i in itertools.count())  # a corpus larger than memory
    first = next(chunks(endless, 5))
    assert first == (["0", "1", "2", "3", "4"], ["0", "1", "2", "3", "4"])
    assert next(endless) == ("5", "5")  # nothing beyond the chunk was consumed


def test_translation_column_and_bad_columns(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps({"translation": {"de": a, "en": b}}) + "\n"
                         for a, b in rows(5)))
    d = DataConfig(path="json", data_files={"train": str(p)}, src="de", tgt="en")
    assert list(stream_pairs(d, "train")) == rows(5)
    with pytest.raises(UserError, match="no key 'fr'"):
        list(stream_pairs(DataConfig(path="json", data_files={"train": str(p)}, src="fr",
                                     tgt="en"), "train"))
    with pytest.raises(UserError, match="no split 'valid'"):
        list(stream_pairs(d, "valid"))


def test_misaligned_text_files_are_named(tmp_path):
    (tmp_path / "a").write_text("x\ny\nz\n")
    (tmp_path / "b").write_text("x\ny\n")
    d = DataConfig(path="text", data_files={"train": [str(tmp_path / "a"), str(tmp_path / "b")]})
    with pytest.raises(UserError, match="a has 3 lines but .*b has 2"):
        list(stream_pairs(d, "train"))


def test_cli_trains_from_a_stream_and_resumes(tmp_path, run_cli):
    files = write_json(tmp_path, rows(200), rows(16, 1))
    (tmp_path / "cfg.yaml").write_text(json.dumps({
        "data": {"path": "json", "data_files": files, "test_split": None, "streaming": True,
                 "chunk_size": 64},
        "model": {"embedding_dim": 16, "hidden_size": 16, "dropout": 0.0},
        "train": {"batch_size": 16, "eval_every": 10, "seed": 2, "threads": 1}}))
    p = run_cli("train", "--config", "cfg.yaml", "--out", "run", "--no-progress", check=False)
    assert p.returncode == 2 and "set train.max_steps" in p.stderr and "Traceback" not in p.stderr
    run_cli("train", "--config", "cfg.yaml", "--set", "train.max_steps=10", "--out", "run",
            "--no-progress")
    p = run_cli("train", "--config", "cfg.yaml", "--set", "train.max_steps=30", "--out", "run",
                "--resume", "--no-progress")
    assert "streaming" in p.stderr and "resumed" in p.stderr
    steps = [json.loads(l)["step"] for l in open(tmp_path / "run" / "metrics.jsonl")]
    assert steps == [10, 20, 30]  # 200 pairs = 13 batches per pass: the stream was read again
    # scoring a split of a streamed config reads that split alone
    p = run_cli("evaluate", "--checkpoint", "run/last.pt", "--split", "validation", "--json")
    assert json.loads(p.stdout)["bleu"] >= 0 and "Traceback" not in p.stderr


def sharded_rows(corpus, world=2, epoch=0):
    """Per rank: its batches' (rows, ghost) in order."""
    from seq2seq.training.distributed import Dist

    return [corpus.batches(epoch, Dist(rank=r, world=world)) for r in range(world)]


@pytest.mark.parametrize("budget", [dict(batch_size=8), dict(batch_size=8, batch_tokens=40)],
                         ids=["batch_size", "batch_tokens"])
def test_two_processes_train_on_every_pair_exactly_once_per_epoch(tmp_path, budget):
    """49 pairs: an epoch's tail batch (48 + 1) and (batch_tokens) long pairs alone in a global
    batch have fewer sentences than processes; they are trained on, not dropped."""
    rng = random.Random(3)
    train = [(" ".join("abcdefghij"[:rng.randint(2, 9)]),) * 2 for _ in range(46)]
    train += [(" ".join(("abcdefghij" * 5)[:n]),) * 2 for n in (42, 45, 48)]  # alone per batch
    files = write_json(tmp_path, train, rows(4, 1))
    corpus = load_corpus(config(fmt := "json", files, streaming=False, **budget).replace(
        data=DataConfig(path=fmt, data_files=files, test_split=None)), log=lambda m: None)
    assert len(corpus.train.src) == 49
    per_rank = sharded_rows(corpus)
    assert len(per_rank[0]) == len(per_rank[1])  # every global step has a shard on each rank
    trained = Counter(i for shards in per_rank for s in shards if not s.ghost for i in s.rows)
    assert trained == Counter(range(49))  # every pair once
    ghosts = [s for shards in per_rank for s in shards if s.ghost]
    assert ghosts and all(len(s.rows) == 1 for s in ghosts)
    # a ghost shard's batch adds nothing to the loss
    from seq2seq.training.loss import masked_cross_entropy
    from seq2seq.training.distributed import Dist

    batches = list(corpus.epoch(0, Dist(rank=1, world=2)))
    ghost_batches = [b for b, s in zip(batches, per_rank[1]) if s.ghost]
    for b in ghost_batches:
        loss, n = masked_cross_entropy(torch.zeros(*b.tgt_out.shape, 7), b.tgt_out, PAD)
        assert n == 0 and float(loss) == 0.0


def test_streaming_reports_its_dropped_pairs(tmp_path):
    train, valid = rows(), rows(12, seed=1)
    files = write_json(tmp_path, train, valid)
    mem = load_corpus(config("json", files, streaming=False), log=lambda m: None)
    said = []
    stream = load_corpus(config("json", files), mem.tokenizer, log=said.append)
    list(stream.epoch(0))
    dropped = len(train) - len(mem.train.src)
    assert dropped > 0 and any(f"{len(mem.train.src)} training pairs ({dropped} dropped" in m
                               for m in said), said
