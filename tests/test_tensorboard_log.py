"""TensorBoard logs: the event files hold the metrics.jsonl scalars and validation translations
(read back with the tensorboard package's reader); without the package, a one-line error."""

import json
import subprocess
import sys

import pytest

from conftest import text_run_config
from seq2seq import config
from seq2seq.training.loop import train

PAIRS = [("a b c", "c b a"), ("d e", "e d"), ("f g h i", "i h g f"), ("j k", "k j")] * 4


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return text_run_config(tmp_path, PAIRS, [
        "model.embedding_dim=16", "model.hidden_size=32", "train.batch_size=4",
        "train.max_steps=8", "train.eval_every=4", "train.tensorboard=true"])


def read_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_event_files_hold_the_logged_scalars_and_translations(cfg, tmp_path):
    pytest.importorskip("tensorboard")
    train(cfg, tmp_path / "run", progress=False)
    records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text()
               .splitlines()]
    assert [r["step"] for r in records] == [4, 8]
    assert not any("examples" in r for r in records)  # translations go to TensorBoard only
    acc = read_events(tmp_path / "run")
    tags = set(acc.Tags()["scalars"])
    assert {"train_loss", "valid_loss", "valid_bleu", "valid_chrf", "lr", "tf_ratio",
            "tokens_per_s"} <= tags
    for key in tags:
        logged = [(e.step, e.value) for e in acc.Scalars(key)]
        assert logged == [(r["step"], pytest.approx(r[key], rel=1e-5)) for r in records], key
    (tag,) = [t for t in acc.Tags()["tensors"] if t.startswith("validation_translations")]
    texts = acc.Tensors(tag)
    assert [t.step for t in texts] == [4, 8]
    table = texts[-1].tensor_proto.string_val[0].decode()
    assert "| source | output | reference |" in table and "a b c" in table


def test_overwrite_removes_old_event_files(cfg, tmp_path):
    pytest.importorskip("tensorboard")
    train(cfg, tmp_path / "run", progress=False)
    train(cfg, tmp_path / "run", overwrite=True, progress=False)
    assert len(list((tmp_path / "run").glob("events.out.tfevents.*"))) == 1
    assert [e.step for e in read_events(tmp_path / "run").Scalars("valid_loss")] == [4, 8]


def test_without_the_package_a_one_line_error(cfg, tmp_path):
    (tmp_path / "cfg.yaml").write_text(config.to_yaml(cfg), encoding="utf-8")
    code = ("import sys; sys.modules['torch.utils.tensorboard'] = None; "
            "from seq2seq.cli.main import main; sys.exit(main(sys.argv[1:]))")
    p = subprocess.run([sys.executable, "-c", code, "train", "--config", "cfg.yaml", "--out",
                        "run", "--no-progress"], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert "seq2seq train: error: train.tensorboard: true needs the tensorboard package" \
        in p.stderr and "pip install tensorboard" in p.stderr
    assert not (tmp_path / "run" / "last.pt").exists()  # it stopped before training


def test_a_resumed_run_continues_its_curves(cfg, tmp_path):
    pytest.importorskip("tensorboard")
    import dataclasses

    train(cfg, tmp_path / "run", progress=False)
    longer = cfg.replace(train=dataclasses.replace(cfg.train, max_steps=12))
    train(longer, tmp_path / "run", resume=True, progress=False)
    assert len(list((tmp_path / "run").glob("events.out.tfevents.*"))) == 2
    assert [e.step for e in read_events(tmp_path / "run").Scalars("valid_loss")] == [4, 8, 12]
