"""``compare-tf --fine-tune STEPS``: a teacher-forced model per seed, then every arm of that
seed from its checkpoint, with a fresh optimizer, for exactly STEPS updates."""

import csv
import json

import pytest
import torch

from seq2seq.compare import runs, study
from seq2seq.data import toy


def _max_weight_change(a, b):
    wa = torch.load(a, weights_only=True)["model"]
    wb = torch.load(b, weights_only=True)["model"]
    return max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)


@pytest.fixture
def tiny_reverse(monkeypatch, tmp_path):
    monkeypatch.setattr(runs, "toy_dataset", lambda task, seed: toy.reverse(
        seed, task=task, max_len=6, train_size=300, valid_size=30, test_size=31))
    monkeypatch.chdir(tmp_path)
    return tmp_path


ARGS = ["--toy", "reverse", "--settings", "constant:1.0", "bengio", "--beam-sizes", "1",
        "--seeds", "2", "--out", "cmp", "--no-progress", "--fine-tune", "3",
        "--set", "model.embedding_dim=8", "--set", "model.hidden_size=8",
        "--set", "train.max_steps=12", "--set", "train.eval_every=4",
        "--set", "train.warmup_steps=0", "--set", "train.lr=0.01"]


def test_every_arm_starts_from_its_seeds_pretrained_model(tiny_reverse, capsys):
    assert study.main(ARGS) == 0
    out = tiny_reverse / "cmp"
    pre = list(csv.DictReader(open(out / "pretrained.csv")))
    assert [(r["seed"], r["steps"]) for r in pre] == [("1", "12"), ("2", "12")]
    for slug in ("constant-1.0", "bengio"):
        for seed in (1, 2):
            run = out / "runs" / slug / f"seed{seed}"
            result = json.loads((run / "result.json").read_text())
            start = out / "pretrained" / f"seed{seed}" / "best.pt"
            assert result["steps"] == 3
            assert result["init_from"].startswith(f"{start.resolve()}@sha256:")
            # 3 Adam steps of lr 0.01 move no weight by more than about 0.03 (clipped: less),
            # while the two seeds' pretrained models differ by far more
            assert _max_weight_change(run / "last.pt", start) < 0.035
            other = out / "pretrained" / f"seed{3 - seed}" / "best.pt"
            assert _max_weight_change(run / "last.pt", other) > 0.1
    results = list(csv.DictReader(open(out / "results.csv")))
    assert [r["setting"] for r in results] == ["constant:1.0", "bengio"]
    # the schedule's horizon is the fine-tuning: bengio decays over its 3 steps
    bengio = results[1]
    assert float(bengio["ratio_mean"]) < 1.0
    md = (out / "results.md").read_text()
    assert "3 fine-tuning steps each" in md and "pretrained (stage 1" in md
    # resumable: everything is reused, stage 1 included
    capsys.readouterr()
    assert study.main(ARGS) == 0
    assert capsys.readouterr().err.count("reusing the finished run") == 6
    # stage 1 trained again (another budget): its checkpoints change, so every arm trains
    # again from the new ones, none is reused
    assert study.main(ARGS + ["--set", "train.max_steps=8"]) == 0
    assert capsys.readouterr().err.count("reusing the finished run") == 0
    for seed in (1, 2):
        result = json.loads((out / "runs" / "bengio" / f"seed{seed}" / "result.json").read_text())
        assert result["steps"] == 3 and _max_weight_change(
            out / "runs" / "bengio" / f"seed{seed}" / "last.pt",
            out / "pretrained" / f"seed{seed}" / "best.pt") < 0.035


def test_fine_tune_set_changes_the_arms_only(tiny_reverse, capsys):
    # the arms at a learning rate of 1e-9: Adam moves no weight by more than about 3e-9, while
    # stage 1 still trains at the config's 0.01 (12 steps)
    args = ARGS + ["--settings", "constant:1.0", "--seeds", "1",
                   "--fine-tune-set", "train.lr=1e-9"]
    assert study.main(args) == 0
    out = tiny_reverse / "cmp"
    start = out / "pretrained" / "seed1" / "best.pt"
    run = out / "runs" / "constant-1.0" / "seed1"
    assert json.loads((run / "result.json").read_text())["steps"] == 3
    assert _max_weight_change(run / "last.pt", start) < 1e-7
    assert [r["steps"] for r in csv.DictReader(open(out / "pretrained.csv"))] == ["12"]
    # a warm-up as long as the fine-tuning is named
    capsys.readouterr()
    assert study.main(ARGS + ["--fine-tune-set", "train.warmup_steps=5", "--seeds", "1",
                              "--settings", "constant:1.0"]) == 0
    assert "warm-up (train.warmup_steps=5) is not shorter than their 3 updates" in \
        capsys.readouterr().err
    assert study.main(ARGS[:-14] + ["--fine-tune-set", "train.lr=0.1"]) != 0
    err = capsys.readouterr().err
    assert "--fine-tune-set changes the fine-tuning arms' config: it needs --fine-tune" in err
    assert "Traceback" not in err


def test_fine_tune_steps_must_be_positive(tiny_reverse, capsys):
    assert study.main(ARGS + ["--fine-tune", "0"]) != 0  # the last one counts
    err = capsys.readouterr().err
    assert "--fine-tune must be >= 1" in err and "Traceback" not in err


def test_a_stored_run_without_a_later_key_is_the_same_run():
    """A key added to the config since a run was stored, at its default, keeps the run."""
    from seq2seq import config
    from seq2seq.compare.runs import same_config

    new = config.load(None, ["train.max_steps=7"]).to_dict()
    old = {**new, "mrt": None, "train": {k: v for k, v in new["train"].items()
                                         if k != "objective"}}
    old.pop("mrt")
    assert same_config(old, new)
    assert not same_config(old, config.load(None, ["train.max_steps=8"]).to_dict())
    assert not same_config({**old, "train": {**old["train"], "lr": 0.5}}, new)
    assert not same_config({"train": {"no_such_key": 1}}, new)
