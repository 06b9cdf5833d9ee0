"""Checkpoint averaging: the mean of the weights, usable by translate."""

import pytest
import torch

from seq2seq.errors import UserError
from seq2seq.training import checkpoint
from seq2seq.config import Config, ModelConfig
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.data.tokenizer import PAD, Tokenizer


def make_ckpt(path, seed, tok, **model):
    torch.manual_seed(seed)
    cfg = Config(model=ModelConfig(embedding_dim=8, hidden_size=8, **model))
    model = Seq2Seq.from_config(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, PAD)
    checkpoint.save({"model": model.state_dict(), "config": cfg.to_dict(),
                     "tokenizer": tok.state()}, path)
    return model.state_dict()


def test_average_is_the_mean_and_translates(tmp_path, run_cli):
    tok = Tokenizer.train(["a b c d"] * 20, ["d c b a"] * 20, Config().tokenizer)
    a = make_ckpt(tmp_path / "a.pt", 1, tok)
    b = make_ckpt(tmp_path / "b.pt", 2, tok)
    run_cli("average", "--checkpoints", tmp_path / "a.pt", tmp_path / "b.pt",
            "--out", tmp_path / "avg.pt")
    avg = checkpoint.load(tmp_path / "avg.pt")["model"]
    for k in a:
        assert torch.allclose(avg[k], (a[k] + b[k]) / 2, atol=1e-6), k
    p = run_cli("translate", "--checkpoint", tmp_path / "avg.pt", input="a b\n\nc\n")
    assert len(p.stdout.splitlines()) == 3


def test_average_refuses_checkpoints_of_different_runs(tmp_path, run_cli):
    tok1 = Tokenizer.train(["a b c d"] * 20, ["d c b a"] * 20, Config().tokenizer)
    tok2 = Tokenizer.train(["x y z"] * 20, ["z y x"] * 20, Config().tokenizer)
    make_ckpt(tmp_path / "a.pt", 1, tok1)
    make_ckpt(tmp_path / "b.pt", 1, tok2)
    p = run_cli("average", "--checkpoints", tmp_path / "a.pt", tmp_path / "b.pt",
                "--out", tmp_path / "avg.pt", check=False)
    assert p.returncode == 2 and "not from the same run" in p.stderr
    assert "Traceback" not in p.stderr


def test_average_takes_checkpoints_of_a_run_resumed_on_the_other_kernels(tmp_path):
    """model.kernels changes how fast the same function runs, not the weights: a run resumed
    on the other kernels (as --resume allows) averages; another model key still refuses."""
    tok = Tokenizer.train(["a b c d"] * 20, ["d c b a"] * 20, Config().tokenizer)
    a = make_ckpt(tmp_path / "a.pt", 1, tok, kernels="fast")
    b = make_ckpt(tmp_path / "b.pt", 2, tok, kernels="plain")
    avg = checkpoint.average([tmp_path / "a.pt", tmp_path / "b.pt"], tmp_path / "avg.pt")
    assert avg["config"]["model"]["kernels"] == "plain"  # the last one's config
    for k in a:
        assert torch.allclose(avg["model"][k], (a[k] + b[k]) / 2, atol=1e-6), k
    make_ckpt(tmp_path / "c.pt", 2, tok, kernels="plain", dropout=0.5)
    with pytest.raises(UserError, match="not from the same run"):
        checkpoint.average([tmp_path / "a.pt", tmp_path / "c.pt"], tmp_path / "avg.pt")


def test_the_end_of_a_run_does_not_count_twice_in_the_kept_checkpoints(tmp_path):
    """keep_last: a run's final validation a few steps after the last scheduled one takes its
    place among the step-N.pt files; one far after it is kept beside it."""
    from seq2seq.training.run_folder import RunFolder, kept

    folder = RunFolder(tmp_path)
    names = lambda: [p.name for p in kept(tmp_path)]
    for step in (100, 200, 300):
        folder.save({"model": {}}, step, best=False, keep_last=5)
    folder.save({"model": {}}, 310, best=False, keep_last=5, replace_last=True)
    assert names() == ["step-100.pt", "step-200.pt", "step-310.pt"]
    folder.save({"model": {}}, 400, best=False, keep_last=5)
    folder.save({"model": {}}, 480, best=False, keep_last=5, replace_last=True)
    assert names() == ["step-100.pt", "step-200.pt", "step-310.pt", "step-400.pt", "step-480.pt"]
    folder.save({"model": {}}, 500, best=False, keep_last=2)
    assert names() == ["step-480.pt", "step-500.pt"]
    for step in (600, 700):
        folder.save({"model": {}}, step, best=False, keep_last=3)
    folder.save({"model": {}}, 720, best=False, keep_last=3, replace_last=True)
    assert names() == ["step-500.pt", "step-600.pt", "step-720.pt"]  # still keep_last of them
