"""Loading a checkpoint runs no code: a crafted pickle is refused by every command that opens
checkpoints before anything in it runs; checkpoints are tensors and plain data, loaded with
``weights_only=True``; a trusted file with Python objects in it converts once and decodes as
before."""

import shutil

import numpy as np
import pytest
import torch

from conftest import seq2seq
from seq2seq.training import checkpoint
from seq2seq.training.loop_state import StopReason
from test_cli import toy  # noqa: F401 (the CLI's toy run, trained once)

MARKER = "pwned.txt"


class Evil:
    """What an attacker pickles: unpickling it calls ``open(MARKER, "w")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def evil(toy, tmp_path_factory):  # noqa: F811
    """A crafted checkpoint (``evil.pt``) and a run folder whose ``last.pt`` is one, in a
    folder where the marker file would appear."""
    d = tmp_path_factory.mktemp("evil")
    payload = {"format": checkpoint.FORMAT, "model": {}, "config": {}, "tokenizer": {},
               "x": Evil(d / MARKER)}
    torch.save(payload, d / "evil.pt")
    run = d / "run"
    shutil.copytree(toy.run, run)
    shutil.copy(d / "evil.pt", run / "last.pt")
    shutil.copy(d / "evil.pt", run / "best.pt")
    assert not (d / MARKER).exists()
    return d


def commands(evil, toy):  # noqa: F811
    e = evil / "evil.pt"
    src = evil / "src.txt"
    src.write_text("cat\n", encoding="utf-8")
    return {
        "translate": ["translate", "--checkpoint", e, "--input", src],
        "ensemble": ["translate", "--checkpoint", toy.run, e, "--input", src],
        "evaluate": ["evaluate", "--checkpoint", e],
        "score": ["score", "--checkpoint", e, "--src", src, "--tgt", src],
        "average": ["average", "--checkpoints", e, e, "--out", evil / "avg.pt"],
        "export": ["export", "--checkpoint", e, "--out", evil / "exported"],
        "serve": ["serve", "--checkpoint", e, "--port", "0"],
        "resume": ["train", "--config", toy.cfg, "--out", evil / "run", "--resume",
                   "--no-progress"],
        "init-from": ["train", "--config", toy.cfg, "--out", evil / "tuned", "--init-from", e,
                      "--no-progress"],
    }


@pytest.mark.parametrize("command", ["translate", "ensemble", "evaluate", "score", "average",
                                     "export", "serve", "resume", "init-from"])
def test_a_crafted_checkpoint_runs_nothing(toy, evil, command):  # noqa: F811
    args = commands(evil, toy)[command]
    p = seq2seq(*args, cwd=evil, check=False, timeout=120)
    assert not (evil / MARKER).exists(), f"{command}: the pickle's code ran"
    assert p.returncode == 2, p.stderr
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "refused" in err[0] and "convert-checkpoint" in err[0], err


def test_checkpoints_are_plain_data_and_round_trip_weights_only(toy, tmp_path):  # noqa: F811
    for name in ("best.pt", "last.pt"):
        raw = torch.load(toy.run / name, weights_only=True)  # no object of the file's choosing
        assert {"model", "config", "tokenizer", "optimizer", "rng"} <= set(raw)
        checkpoint.check_plain(raw)
    ckpt = checkpoint.load(toy.run / "best.pt")
    checkpoint.save(ckpt, tmp_path / "again.pt")
    again = checkpoint.load(tmp_path / "again.pt")
    assert again.keys() == ckpt.keys()
    assert all(torch.equal(again["model"][k], v) for k, v in ckpt["model"].items())
    with pytest.raises(TypeError, match="plain data"):  # nothing else can be written
        checkpoint.save({**ckpt, "stop": StopReason.BUDGET}, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_an_old_checkpoint_with_objects_converts_and_decodes_identically(toy, tmp_path):  # noqa: F811
    ckpt = torch.load(toy.run / "best.pt", weights_only=True)
    ckpt["numpy_rng"] = np.random.RandomState(0).get_state()  # a tuple with an ndarray
    ckpt["train_state"] = {**ckpt["train_state"], "stopped_by": StopReason.BUDGET}  # an enum
    torch.save(ckpt, tmp_path / "old.pt")  # as an earlier writer might have
    lines = "cat\ntree house\ndog\n"
    before = seq2seq("translate", "--checkpoint", toy.run / "best.pt", cwd=tmp_path,
                     input=lines).stdout
    p = seq2seq("translate", "--checkpoint", tmp_path / "old.pt", cwd=tmp_path, input=lines,
                check=False)
    assert p.returncode == 2 and "convert-checkpoint" in p.stderr  # refused, with the way out
    p = seq2seq("convert-checkpoint", tmp_path / "old.pt", "--out", tmp_path / "new.pt",
                cwd=tmp_path, check=False)
    assert p.returncode == 2 and "--trusted" in p.stderr  # said knowingly, or not at all
    assert not (tmp_path / "new.pt").exists()
    seq2seq("convert-checkpoint", tmp_path / "old.pt", "--out", tmp_path / "new.pt",
            "--trusted", cwd=tmp_path)
    new = torch.load(tmp_path / "new.pt", weights_only=True)
    assert new["train_state"]["stopped_by"] == StopReason.BUDGET.value
    assert torch.equal(new["numpy_rng"][1], torch.from_numpy(ckpt["numpy_rng"][1]))
    after = seq2seq("translate", "--checkpoint", tmp_path / "new.pt", cwd=tmp_path,
                    input=lines).stdout
    assert after == before
