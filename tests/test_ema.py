"""The moving average of the weights (``train.ema_decay``): its arithmetic, that the model holds
it only while validating, and that a run validates and saves it."""

import dataclasses
import json

import pytest
import torch

from conftest import text_run_config
from seq2seq.training import checkpoint
from seq2seq import config
from seq2seq.load import load_model
from seq2seq.training.ema import WeightAverage
from seq2seq.training.validation import validate
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.data.tokenizer import PAD
from seq2seq.training.loop import Trainer


def small_model(tie: bool) -> Seq2Seq:
    cfg = config.load(None, ["model.embedding_dim=8", "model.hidden_size=8",
                             f"model.tie_embeddings={str(tie).lower()}",
                             "model.input_feeding=true"]).model
    torch.manual_seed(0)
    return Seq2Seq.from_config(cfg, 12, 12, PAD)


def test_the_average_follows_the_formula_and_tied_weights_count_once():
    model = small_model(tie=True)
    ema = WeightAverage(model, decay=0.99)
    start = [p.detach().clone() for p in model.parameters()]
    expected = [s.clone() for s in start]
    for t in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(t)
        d = min(0.99, (1 + t) / (10 + t))
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, model.parameters())]
    for e, s in zip(expected, ema.shadow):
        torch.testing.assert_close(s, e)
    sd = ema.state_dict()
    assert sd.keys() == model.state_dict().keys()
    # the tied output projection and target embedding: one parameter under two keys, and one
    # averaged tensor under both
    first = {}
    ties = 0
    for k, v in model.state_dict(keep_vars=True).items():
        if id(v) in first:
            ties += 1
            assert sd[k] is sd[first[id(v)]]
        first.setdefault(id(v), k)
    assert ties == 1
    assert len(ema.shadow) == len(list(model.parameters()))


def test_applied_swaps_the_average_in_and_restores_the_weights_exactly():
    model = small_model(tie=False)
    ema = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    ema.update(100)  # decay 0.5: halfway
    own = [p.detach().clone() for p in model.parameters()]
    with ema.applied():
        inside = [p.detach().clone() for p in model.parameters()]
    for o, i, p, s in zip(own, inside, model.parameters(), ema.shadow):
        assert torch.equal(p, o)  # restored bit for bit
        assert torch.equal(i, s)
        torch.testing.assert_close(i, o * (2 / 3))  # (x + 3x) / 2 = 2x = 3x * 2/3


def test_config_rejects_a_decay_of_one():
    with pytest.raises(config.ConfigError):
        config.load(None, ["train.ema_decay=1.0"])


PAIRS = [("a b c", "c b a"), ("d e", "e d"), ("f g h i", "i h g f"), ("j k", "k j")] * 4


def test_a_run_validates_and_saves_the_average(tmp_path, monkeypatch):
    """The validation loss the run records is the average's, not the trained weights', and
    last.pt's model is the average (the trained weights beside it)."""
    monkeypatch.chdir(tmp_path)
    cfg = text_run_config(tmp_path, PAIRS, [
        "model.embedding_dim=16", "model.hidden_size=16", "train.batch_size=4",
        "train.max_steps=12", "train.ema_decay=0.9", "train.lr=0.01"])
    trainer = Trainer(cfg, "run", progress=False)
    trainer.run()
    rec = json.loads(open("run/metrics.jsonl", encoding="utf-8").readlines()[-1])
    args = (trainer.corpus.valid, trainer.tok, cfg, trainer.device, trainer.corpus.output_limit)
    own = validate(trainer.model, *args)["valid_loss"]
    with trainer.ema.applied():
        averaged = validate(trainer.model, *args)["valid_loss"]
    assert rec["valid_loss"] == pytest.approx(averaged, rel=1e-6)
    assert own != pytest.approx(averaged, rel=1e-3)
    ckpt = checkpoint.load("run/last.pt")
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(ckpt["train_weights"][k], v)
    with trainer.ema.applied():
        for k, v in trainer.model.state_dict().items():
            assert torch.equal(ckpt["model"][k], v)
    model, _, _ = load_model("run/last.pt")  # what translating loads: the average
    with trainer.ema.applied():
        for (k, v), w in zip(model.state_dict().items(), trainer.model.state_dict().values()):
            assert torch.equal(v, w), k
