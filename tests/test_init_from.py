"""``seq2seq train --init-from CHECKPOINT``: a new run from the weights and tokenizer of a
finished one, with a fresh optimizer, schedule, step count and loop state; the architecture must
match (one line naming the key), and it does not combine with ``--resume``.

One toy run is trained for the module; each test starts new runs from it.
"""

import dataclasses
import json
from types import SimpleNamespace

import pytest
import torch

from conftest import seq2seq, write_text_split
from seq2seq import config
from seq2seq.errors import UserError
from seq2seq.training import checkpoint
from seq2seq.training import loop as train_mod
from seq2seq.training.validation import score_key

PAIRS = [("a b c", "c b a"), ("d e", "e d"), ("f g h i", "i h g f"), ("j k", "k j"),
         ("a c e g", "g e c a"), ("b d", "d b")] * 3
MODEL = ["model.cell=gru", "model.impl=manual", "model.embedding_dim=16",
         "model.hidden_size=32", "model.dropout=0.0"]


def records(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A run trained 40 steps (its validation loss far below a fresh model's), and its config
    as a YAML file a command line can take."""
    d = tmp_path_factory.mktemp("init_from")
    files = {split: [str(d / f) for f in write_text_split(d, split, PAIRS if split == "train"
                                                         else PAIRS[:4])]
             for split in ("train", "valid")}
    cfg = config.load(None, [
        "data.path=text", "data.test_split=null",
        f"data.data_files={{train: {files['train']}, validation: {files['valid']}}}", *MODEL,
        "train.batch_size=4", "train.lr=0.01", "train.seed=3",
        "train.lr_schedule=constant", "train.eval_every=20", "train.max_steps=40"])
    train_mod.train(cfg, d / "base", progress=False)
    (d / "cfg.yaml").write_text(config.to_yaml(cfg), encoding="utf-8")
    return SimpleNamespace(dir=d, cfg=cfg, run=d / "base", yaml=d / "cfg.yaml",
                           best=max(records(d / "base"), key=score_key))


def still(cfg, **model):
    """``cfg`` for one step that barely moves the weights (lr 1e-12), with ``model`` keys."""
    return cfg.replace(model=dataclasses.replace(cfg.model, **model),
                       train=dataclasses.replace(cfg.train, lr=1e-12, max_steps=1))


def test_a_run_starts_from_the_weights_and_tokenizer_of_another(base, tmp_path, capfd):
    """The new run's first validation scores what the run it starts from scored (not what a
    fresh model scores), with its tokenizer (a tokenizer section that says otherwise is not
    used: no vocabulary learned again), on the other layers (model.impl may differ), with a
    fresh step count and optimizer; its log and its checkpoint say where it started."""
    cfg = still(base.cfg, impl="fused")
    cfg = cfg.replace(tokenizer=dataclasses.replace(cfg.tokenizer, byte_fallback=False))
    summary = train_mod.train(cfg, tmp_path / "tuned", progress=False, init_from=base.run)
    fresh = train_mod.train(cfg, tmp_path / "fresh", progress=False)
    (tuned_rec,), (fresh_rec,) = records(tmp_path / "tuned"), records(tmp_path / "fresh")
    assert tuned_rec["valid_loss"] == pytest.approx(base.best["valid_loss"], rel=1e-4)
    assert fresh_rec["valid_loss"] > base.best["valid_loss"] + 1.0
    origin = checkpoint.load(base.run)  # a run folder means its best.pt
    tuned = checkpoint.load(tmp_path / "tuned" / "last.pt")
    assert tuned["tokenizer"] == origin["tokenizer"] != checkpoint.load(
        tmp_path / "fresh" / "last.pt")["tokenizer"]
    assert tuned["config"]["tokenizer"] == origin["config"]["tokenizer"]
    assert tuned["config"]["model"]["impl"] == "fused"
    assert tuned["train_state"]["step"] == summary["steps"] == 1
    assert {int(s["step"]) for s in tuned["optimizer"]["state"].values()} == {1}
    assert tuned["init_from"] == summary["init_from"] == str((base.run / "best.pt").resolve())
    assert f"initialized from {(base.run / 'best.pt').resolve()}" in capfd.readouterr().err


def test_init_from_survives_a_resume(base, tmp_path):
    """A fine-tuning run stopped half-way and resumed still records where it started from."""
    cfg = still(base.cfg)
    train_mod.train(cfg, tmp_path / "tuned", progress=False, init_from=base.run / "last.pt")
    longer = cfg.replace(train=dataclasses.replace(cfg.train, max_steps=2))
    train_mod.train(longer, tmp_path / "tuned", resume=True, progress=False)
    tuned = checkpoint.load(tmp_path / "tuned" / "last.pt")
    assert tuned["train_state"]["step"] == 2
    assert tuned["init_from"] == str((base.run / "last.pt").resolve())


def test_another_architecture_is_refused_with_one_line_naming_the_key(base, tmp_path):
    with pytest.raises(UserError) as e:
        train_mod.train(still(base.cfg, hidden_size=16), tmp_path / "x", progress=False,
                        init_from=base.run)
    msg = str(e.value)
    assert "model.hidden_size" in msg and "16" in msg and "32" in msg and "\n" not in msg
    assert not (tmp_path / "x" / "last.pt").exists()


def test_the_command_line_refuses_init_from_with_resume_and_documents_it(base, tmp_path):
    p = seq2seq("train", "--config", base.yaml, "--out", tmp_path / "x", "--init-from",
                base.run, "--resume", cwd=tmp_path, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    (line,) = p.stderr.strip().splitlines()
    assert "--init-from" in line and "--resume" in line
    assert not (tmp_path / "x").exists()
    p = seq2seq("train", "--config", base.yaml, "--out", tmp_path / "y", "--init-from",
                base.run, "--set", "model.hidden_size=16", cwd=tmp_path, check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "model.hidden_size" in p.stderr
    before = sorted(p.name for p in base.run.iterdir())  # --overwrite of the run it starts from
    p = seq2seq("train", "--config", base.yaml, "--out", base.run, "--init-from", base.run,
                "--overwrite", cwd=tmp_path, check=False)
    assert p.returncode == 2 and "--overwrite would clear" in p.stderr
    assert sorted(p.name for p in base.run.iterdir()) == before  # nothing deleted
    text = seq2seq("train", "--help", cwd=tmp_path).stdout
    assert "--init-from CHECKPOINT" in text and "train --config my.yaml --out runs/tuned " \
        "--init-from runs/my" in text


def test_fine_tuning_from_the_command_line_continues_learning(base, tmp_path):
    """``seq2seq train --init-from RUN``: the new run's first validation is at least as good
    as where the run it starts from ended (same data, a smaller learning rate)."""
    seq2seq("train", "--config", base.yaml, "--out", tmp_path / "tuned", "--init-from",
            base.run, "--set", "train.lr=0.001", "--set", "train.max_steps=20", "--no-progress",
            cwd=tmp_path)
    first = records(tmp_path / "tuned")[0]
    assert first["step"] == 20
    assert first["valid_loss"] < base.best["valid_loss"] + 0.05
