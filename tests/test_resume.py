"""Stopping and resuming gives the same model as one uninterrupted run (CPU, same seed).

Tolerance: none. The parameters and the Adam state are compared bitwise (``torch.equal``): on
CPU with one thread every operation is deterministic, and the checkpoint restores the model,
the optimizer, the step, the position in the epoch's batch order (which is a function of the
seed and the epoch) and the torch and Python RNG states (dropout and the teacher-forcing coins
draw from them, so both are switched on here).
"""

import os
import signal

import pytest
import torch

from seq2seq import checkpoint, config
from seq2seq import train as train_mod

PAIRS = [("a b c", "c b a"), ("d e", "e d"), ("f g h i", "i h g f"), ("j k", "k j"),
         ("a c e g", "g e c a"), ("b d", "d b")] * 3  # 18 pairs: 5 batches of 4 per epoch
N = 12  # steps: two epoch ends (5, 10) on the way, so validations and the plateau count too


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src, tgt = zip(*PAIRS)
    for name, lines in [("train.src", src), ("train.tgt", tgt), ("valid.src", src[:4]),
                        ("valid.tgt", tgt[:4])]:
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config.load(None, [
        "data.path=text", "data.test_split=null",
        "data.data_files={train: [train.src, train.tgt], validation: [valid.src, valid.tgt]}",
        "model.cell=lstm", "model.impl=manual", "model.embedding_dim=16", "model.hidden_size=32",
        "model.dropout=0.3", "teacher_forcing.ratio=0.5", "train.batch_size=4",
        f"train.max_steps={N}", "train.seed=3", "train.lr_schedule=plateau"])


def with_steps(cfg, n):
    import dataclasses

    return cfg.replace(train=dataclasses.replace(cfg.train, max_steps=n))


def assert_same_state(a_path, b_path):
    a, b = checkpoint.load(a_path), checkpoint.load(b_path)
    assert a["train_state"]["step"] == b["train_state"]["step"] == N
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in sa[k]:
            assert torch.equal(sa[k][name], sb[k][name]), (k, name)


def test_stop_at_half_then_resume_equals_one_run(cfg):
    train_mod.train(cfg, "straight", progress=False)
    train_mod.train(with_steps(cfg, N // 2), "split", progress=False)
    assert checkpoint.load("split/last.pt")["train_state"]["step"] == N // 2
    train_mod.train(cfg, "split", resume=True, progress=False)
    assert_same_state("straight/last.pt", "split/last.pt")
    steps = [int(l.split('"step": ')[1].split(",")[0])
             for l in open("split/metrics.jsonl", encoding="utf-8")]
    assert steps == sorted(steps) and steps[-1] == N


def test_interrupt_then_resume_equals_one_run(cfg, monkeypatch):
    """SIGINT (Ctrl-C) arrives during step 7: the step finishes, is saved, and resuming
    from there ends where the uninterrupted run ends."""
    train_mod.train(cfg, "straight", progress=False)
    real = train_mod.learning_rate

    def lr_then_int(c, step, *args):
        if step == 6:
            os.kill(os.getpid(), signal.SIGINT)
        return real(c, step, *args)

    monkeypatch.setattr(train_mod, "learning_rate", lr_then_int)
    summary = train_mod.train(cfg, "split", progress=False)
    assert summary["interrupted"] and summary["steps"] == 7
    monkeypatch.setattr(train_mod, "learning_rate", real)
    train_mod.train(cfg, "split", resume=True, progress=False)
    assert_same_state("straight/last.pt", "split/last.pt")
