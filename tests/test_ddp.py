"""torchrun + DistributedDataParallel on CPU (gloo): 2 processes with batch B each train the same
model as 1 process with batch 2B on the same data (an epoch's tail batch of one sentence
included), and a 2-process run with dropout, resumed half-way, equals the uninterrupted one."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from seq2seq.training import checkpoint

pytestmark = pytest.mark.skipif(shutil.which("torchrun") is None and
                                not os.path.exists(os.path.join(os.path.dirname(sys.executable),
                                                                "torchrun")),
                                reason="torchrun is not installed")


def write_data(d, n=96, dropout=0.0, ratio=1.0):
    import random

    rng = random.Random(0)
    rows = []
    for _ in range(n):
        s = [rng.choice("abcdefgh") for _ in range(rng.randint(3, 8))]
        rows.append({"src": " ".join(s), "tgt": " ".join(reversed(s))})
    for split in ("train", "valid"):
        with open(d / f"{split}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in (rows if split == "train" else rows[:16]))
    (d / "cfg.yaml").write_text(f"""
data: {{path: json, data_files: {{train: {d}/train.jsonl, validation: {d}/valid.jsonl}},
       test_split: null}}
model: {{cell: lstm, impl: fused, embedding_dim: 16, hidden_size: 16, dropout: {dropout}}}
train: {{max_steps: 6, eval_every: 3, seed: 3, threads: 1, lr: 0.01}}
teacher_forcing: {{ratio: {ratio}}}
""")


def run(args, env=None):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    e = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    p = subprocess.run(args if args[0] != "torchrun" else [torchrun] + args[1:],
                       capture_output=True, text=True, env=e, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def params(path):
    return checkpoint.load(path)["model"]


def test_two_processes_equal_one_with_double_batch(tmp_path):
    """97 pairs, global batch 16: 6 batches of 16 and a tail of 1 per epoch; 8 steps cover the
    epoch, so the tail is trained on (rank 1 joins that step with a masked ghost batch)."""
    write_data(tmp_path, n=97)
    cfg = str(tmp_path / "cfg.yaml")
    steps = ["--set", "train.max_steps=8"]
    run([sys.executable, "-m", "seq2seq", "train", "--config", cfg, "--set", "train.batch_size=16",
         *steps, "--out", str(tmp_path / "one"), "--no-progress"])
    run(["torchrun", "--standalone", "--nproc_per_node=2", "-m", "seq2seq", "train",
         "--config", cfg, "--set", "train.batch_size=8", *steps, "--out", str(tmp_path / "two"),
         "--no-progress"])
    a, b = params(tmp_path / "one" / "last.pt"), params(tmp_path / "two" / "last.pt")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    # rank 0 alone wrote the metrics: one record per validation, the losses of both processes
    two = [json.loads(l) for l in open(tmp_path / "two" / "metrics.jsonl")]
    one = [json.loads(l) for l in open(tmp_path / "one" / "metrics.jsonl")]
    assert [r["step"] for r in two] == [3, 6, 8]
    for r1, r2 in zip(one, two):
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-4)


def test_two_processes_with_dropout_resume_exactly(tmp_path):
    """Dropout and teacher-forcing coins draw from each process's own generator; the
    checkpoint keeps every process's state, so stopping at step 3 and resuming equals one run."""
    write_data(tmp_path, dropout=0.3, ratio=0.7)
    cfg = str(tmp_path / "cfg.yaml")
    two = ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "seq2seq", "train",
           "--config", cfg, "--set", "train.batch_size=8", "--no-progress"]
    run(two + ["--out", str(tmp_path / "straight")])
    run(two + ["--set", "train.max_steps=3", "--out", str(tmp_path / "resumed")])
    rngs = checkpoint.load(tmp_path / "resumed" / "last.pt")["rng"]
    assert len(rngs) == 2 and not torch.equal(rngs[0]["torch"], rngs[1]["torch"])
    run(two + ["--out", str(tmp_path / "resumed"), "--resume"])
    a, b = params(tmp_path / "straight" / "last.pt"), params(tmp_path / "resumed" / "last.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_two_processes_stream_the_same_batches_as_one(tmp_path):
    """data.streaming: every rank reads the stream and takes its share of each global batch."""
    write_data(tmp_path)
    cfg = str(tmp_path / "cfg.yaml")
    stream = ["--set", "data.streaming=true", "--set", "data.chunk_size=40"]
    run([sys.executable, "-m", "seq2seq", "train", "--config", cfg, "--set", "train.batch_size=16",
         *stream, "--out", str(tmp_path / "one"), "--no-progress"])
    run(["torchrun", "--standalone", "--nproc_per_node=2", "-m", "seq2seq", "train",
         "--config", cfg, "--set", "train.batch_size=8", *stream, "--out", str(tmp_path / "two"),
         "--no-progress"])
    a, b = params(tmp_path / "one" / "last.pt"), params(tmp_path / "two" / "last.pt")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
