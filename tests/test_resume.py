"""Stopping and resuming gives the same model as one uninterrupted run (CPU, same seed).

Tolerance: none. The parameters and the Adam state are compared bitwise (``torch.equal``): on
CPU with one thread every operation is deterministic, and the checkpoint restores the model,
the optimizer, the step, the position in the epoch's batch order (which is a function of the
seed and the epoch) and the torch and Python RNG states (dropout and the teacher-forcing coins
draw from them, so both are switched on here).
"""

import dataclasses
import json
import os
import signal

import pytest
import torch

from conftest import text_run_config
from seq2seq.training import checkpoint
from seq2seq import config
from seq2seq.training import loop as train_mod

PAIRS = [("a b c", "c b a"), ("d e", "e d"), ("f g h i", "i h g f"), ("j k", "k j"),
         ("a c e g", "g e c a"), ("b d", "d b")] * 3  # 18 pairs: 5 batches of 4 per epoch
N = 12  # steps: two epoch ends (5, 10) on the way, so validations and the plateau count too


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return text_run_config(tmp_path, PAIRS, [
        "model.cell=lstm", "model.impl=manual", "model.embedding_dim=16", "model.hidden_size=32",
        "model.dropout=0.3", "teacher_forcing.ratio=0.5", "train.batch_size=4",
        f"train.max_steps={N}", "train.seed=3", "train.lr_schedule=plateau"])


def with_steps(cfg, n):
    import dataclasses

    return cfg.replace(train=dataclasses.replace(cfg.train, max_steps=n))


def assert_same_state(a_path, b_path):
    a, b = checkpoint.load(a_path), checkpoint.load(b_path)
    assert a["train_state"]["step"] == b["train_state"]["step"] == N
    assert a.keys() == b.keys()
    for weights in ("model", "train_weights"):  # the second only with train.ema_decay
        if weights in a:
            assert a[weights].keys() == b[weights].keys()
            for k in a[weights]:
                assert torch.equal(a[weights][k], b[weights][k]), (weights, k)
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in sa[k]:
            assert torch.equal(sa[k][name], sb[k][name]), (k, name)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_stop_at_half_then_resume_equals_one_run(cfg, ema_decay):
    """Also with an average of the weights: the checkpoint holds the average and the trained
    weights, and the resumed run continues both."""
    cfg = cfg.replace(train=dataclasses.replace(cfg.train, ema_decay=ema_decay))
    train_mod.train(cfg, "straight", progress=False)
    train_mod.train(with_steps(cfg, N // 2), "split", progress=False)
    assert checkpoint.load("split/last.pt")["train_state"]["step"] == N // 2
    train_mod.train(cfg, "split", resume=True, progress=False)
    assert_same_state("straight/last.pt", "split/last.pt")
    steps = [int(l.split('"step": ')[1].split(",")[0])
             for l in open("split/metrics.jsonl", encoding="utf-8")]
    assert steps == sorted(steps) and steps[-1] == N


def metrics(path):
    """The records of a metrics.jsonl, without the timings (which differ run to run)."""
    return [{k: v for k, v in json.loads(l).items() if k not in ("tokens_per_s", "train_seconds")}
            for l in open(path, encoding="utf-8")]


def test_interrupt_then_resume_equals_one_run(cfg, monkeypatch):
    """SIGINT (Ctrl-C) arrives during step 7: the step finishes, is saved, and resuming
    from there ends where the uninterrupted run ends, with the same metrics.jsonl: the
    training loss of steps 6-7 and the ratio of the last step are in the checkpoint."""
    cfg = cfg.replace(train=dataclasses.replace(cfg.train, label_smoothing=0.1),
                      teacher_forcing=dataclasses.replace(cfg.teacher_forcing, schedule="linear"))
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
    straight = metrics("straight/metrics.jsonl")
    assert [r["step"] for r in straight] == [5, 10, 12]
    assert metrics("split/metrics.jsonl") == straight
    assert len({r["tf_ratio"] for r in straight}) == 3  # the linear schedule moved


def test_train_loss_is_comparable_with_the_validation_loss(cfg):
    """With label smoothing, ``train_loss`` is still the plain cross-entropy (the smoothed
    objective is ``train_objective``): a model that does not move (lr 1e-12), validated on its
    training data after one epoch, has the same training and validation loss."""
    cfg = cfg.replace(
        data=dataclasses.replace(cfg.data, data_files={"train": ["train.src", "train.tgt"],
                                                       "validation": ["train.src", "train.tgt"]}),
        model=dataclasses.replace(cfg.model, dropout=0.0),
        teacher_forcing=dataclasses.replace(cfg.teacher_forcing, ratio=1.0),
        train=dataclasses.replace(cfg.train, max_steps=5, lr=1e-12, label_smoothing=0.3))
    train_mod.train(cfg, "still", progress=False)
    rec = json.loads(open("still/metrics.jsonl", encoding="utf-8").readline())
    assert rec["step"] == 5  # one epoch: every training pair once
    assert rec["train_loss"] == pytest.approx(rec["valid_loss"], rel=1e-5)
    assert rec["train_objective"] != pytest.approx(rec["train_loss"], rel=1e-3)


def test_a_run_that_had_stopped_takes_no_more_steps_when_resumed(cfg):
    """Stopped by early stopping (or its time budget): --resume validates nothing new and
    trains no further."""
    from seq2seq.training.loop_state import LoopState, StopReason

    t = dataclasses.replace(cfg.train, patience=2, max_minutes=1.0)
    assert LoopState(bad_evals=2).stopped(t) is StopReason.EARLY_STOPPING
    assert LoopState(train_seconds=60.0).stopped(t) is StopReason.TIME
    assert LoopState(bad_evals=1, train_seconds=59.0).stopped(t) is None
    stops = cfg.replace(train=dataclasses.replace(cfg.train, lr=1e-12, patience=1,
                                                  eval_every=2, max_steps=40))
    first = train_mod.train(stops, "early", progress=False)
    assert first["stopped_by"] == "early stopping" and first["steps"] < 40
    again = train_mod.train(stops, "early", resume=True, progress=False)
    assert again["steps"] == first["steps"] and again["stopped_by"] == "early stopping"


def test_epochs_count_the_last_one_and_a_part_of_one(cfg):
    """A budget that ends with an epoch reports it (not one fewer); one that ends mid-epoch
    reports the fraction done (5 batches per epoch)."""
    assert train_mod.train(with_steps(cfg, 10), "whole", progress=False)["epochs"] == 2.0
    assert train_mod.train(cfg, "part", progress=False)["epochs"] == pytest.approx(2.4)
    # a budget of train.epochs reads the same; and so does the finished run resumed (what
    # compare-tf does to score an old run again: its summary is computed anew)
    two = cfg.replace(train=dataclasses.replace(cfg.train, max_steps=None, epochs=2))
    assert train_mod.train(two, "epochs", progress=False)["epochs"] == 2.0
    again = train_mod.train(two, "epochs", resume=True, progress=False)
    assert (again["steps"], again["epochs"]) == (10, 2.0)


def test_a_run_resumes_on_the_other_kernels(cfg):
    """``model.kernels`` chooses how fast the same model runs, not what it computes: a run
    trained on the fast kernels resumes on the plain ones and back, also from a checkpoint
    written before the key existed (no ``kernels`` in its config: fast); another model setting
    is still refused."""
    from seq2seq.errors import UserError

    train_mod.train(with_steps(cfg, 2), "run", progress=False)
    plain = cfg.replace(model=dataclasses.replace(cfg.model, kernels="plain"))
    assert train_mod.train(with_steps(plain, 4), "run", resume=True, progress=False)["steps"] == 4
    ckpt = checkpoint.load("run/last.pt")
    assert ckpt["config"]["model"]["kernels"] == "plain"
    del ckpt["config"]["model"]["kernels"]  # as written before the key
    checkpoint.save(ckpt, "run/last.pt")
    assert train_mod.train(with_steps(plain, 6), "run", resume=True, progress=False)["steps"] == 6
    other = cfg.replace(model=dataclasses.replace(cfg.model, hidden_size=16))
    with pytest.raises(UserError, match="model section"):
        train_mod.train(with_steps(other, 8), "run", resume=True, progress=False)


def test_a_budget_stop_after_a_free_running_validation_resumes_exactly(cfg):
    """The extra validation at the end of a run stopped by its step budget (step 7, between
    the epoch ends) feeds the decoder its own predictions, which flips teacher-forcing coins:
    validation draws from a forked random stream, so the run resumed with the full budget
    ends where one run ends, and its scheduled validations score the same."""
    free = {"free_running": True}
    train_mod.train(cfg, "straight", progress=False, extra_validation=free)
    train_mod.train(with_steps(cfg, 7), "split", progress=False, extra_validation=free)
    assert metrics("split/metrics.jsonl")[-1]["step"] == 7  # the extra validation ran
    train_mod.train(cfg, "split", resume=True, progress=False, extra_validation=free)
    assert_same_state("straight/last.pt", "split/last.pt")

    def valid(path):
        return [{k: v for k, v in r.items() if k.startswith("valid_")}
                for r in metrics(path) if r["step"] != 7]

    assert "valid_loss_free" in valid("straight/metrics.jsonl")[0]
    assert valid("split/metrics.jsonl") == valid("straight/metrics.jsonl")


def test_wall_seconds_add_up_over_resumes(cfg, monkeypatch):
    """scores.json's ``wall_seconds`` is the whole run's: a run stopped by its budget (its
    first step made 2 s slower) and resumed with a larger one counts the first invocation's
    time (as its last checkpoint has it) and all of the second's."""
    import time

    from seq2seq.training import recipe

    cfg = cfg.replace(data=dataclasses.replace(cfg.data, test_split="validation"))
    real = train_mod.learning_rate

    def slow_first_step(c, step, *args):
        if step == 0:
            time.sleep(2.0)
        return real(c, step, *args)

    monkeypatch.setattr(train_mod, "learning_rate", slow_first_step)
    recipe.run(with_steps(cfg, 6), "run", progress=False)
    first = checkpoint.load("run/last.pt")["train_state"]["wall_seconds"]
    assert first >= 2.0
    monkeypatch.setattr(train_mod, "learning_rate", real)
    t0 = time.perf_counter()
    scores = recipe.run(cfg, "run", resume=True, progress=False)
    second = time.perf_counter() - t0
    assert scores["resumed"] and scores["steps"] == N
    # what the second invocation does not count: the model card's few example translations
    assert first + second - 1.5 <= scores["wall_seconds"] <= first + second + 0.1
    assert json.loads(open("run/summary.json").read())["wall_seconds"] >= first
