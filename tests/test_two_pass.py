"""Two-pass (parallel) scheduled sampling, ``teacher_forcing.passes: 2``
(seq2seq/training/two_pass.py): teacher forcing at ratio 1, the first pass's argmax fed at ratio
0, the soft mix's gradient through the first pass, the plain and fast models alike, and the
config's rules."""

import pytest
import torch
import torch.nn.functional as F

from seq2seq import config
from seq2seq.config import ModelConfig
from seq2seq.data.tokenizer import BOS, PAD
from seq2seq.errors import ConfigError
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.training.objective import Objective
from seq2seq.training.two_pass import TwoPass

from conftest import seq2seq, tiny_text_run

V = 12


def build(kernels, cell="lstm", dropout=0.0):
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, embedding_dim=8, hidden_size=8, dropout=dropout,
                      kernels=kernels)
    return Seq2Seq.from_config(cfg, 15, V, PAD)


def batch(B=6, S=5, T=7):
    """``src (B, S)``, ``src_len (B,)``, ``tgt_in (B, T)``, ``tgt_out (B, T)``, the last row
    padded after 3 tokens."""
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, 15, (B, S), generator=g)
    tgt = torch.randint(4, V, (B, T + 1), generator=g)
    tgt[:, 0] = BOS
    tgt[-1, 4:] = PAD
    return src, torch.full((B,), S), tgt[:, :-1], tgt[:, 1:]


def loss_and_grads(model, two_pass, tf_ratio, seed=5):
    """The objective's loss (passes 1 where ``two_pass`` is None) and every gradient."""
    model.zero_grad()
    torch.manual_seed(seed)
    losses = Objective(model, two_pass=two_pass)(*batch(), tf_ratio)
    losses.objective.backward()
    return losses.objective.detach(), {k: p.grad.clone() for k, p in model.named_parameters()
                                       if p.grad is not None}


def assert_equal(a, b):
    assert torch.equal(a[0], b[0])
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        assert torch.equal(a[1][k], b[1][k]), k


@pytest.mark.parametrize("kernels", ["plain", "fast"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("mix", ["argmax", "sample", "soft"])
def test_ratio_one_is_teacher_forcing(kernels, cell, mix):
    """At ratio 1, with dropout: the losses and gradients of teacher forcing, bit for bit."""
    model = build(kernels, cell, dropout=0.3).train()
    forced = loss_and_grads(model, None, 1.0)
    assert_equal(loss_and_grads(model, TwoPass(mix, mix == "soft"), 1.0), forced)


@pytest.mark.parametrize("kernels", ["plain", "fast"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("mix,gradient", [("argmax", False), ("soft", True)])
def test_both_passes_with_every_position_gold_are_teacher_forcing(kernels, cell, mix,
                                                                  gradient):
    """The first pass run (with its gradient for the soft mix) and a gold mask all True: the
    second pass's loss and the gradients are teacher forcing's, bit for bit."""
    model = build(kernels, cell).train()
    src, lens, tgt_in, tgt_out = batch()

    def run(two_pass):
        model.zero_grad()
        enc = model.encoder(src, lens)
        if two_pass is None:
            features = model.decoder.features(enc, tgt_in)
        else:
            gold = torch.ones_like(tgt_in, dtype=torch.bool)
            features = two_pass.mixed_features(model.decoder, enc, tgt_in, gold)[0]
        logits = model.decoder.out(features)  # (B, T, V)
        loss = F.cross_entropy(logits.transpose(1, 2), tgt_out, ignore_index=PAD)
        loss.backward()
        return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}

    assert_equal(run(TwoPass(mix, gradient)), run(None))


@pytest.mark.parametrize("kernels", ["plain", "fast"])
@pytest.mark.parametrize("scope", ["token", "sequence"])
def test_ratio_zero_feeds_the_first_pass_argmax(kernels, scope):
    """At ratio 0 the second pass embeds BOS, then the first pass's argmax of each previous
    position: the ids its embedding receives, and its features are those of a teacher-forced
    pass over those ids."""
    model = build(kernels).train()
    src, lens, tgt_in, _ = batch()
    with torch.no_grad():
        enc = model.encoder(src, lens)
        first = model.decoder(enc, tgt_in)  # (B, T, V), teacher-forced
        want = torch.cat([tgt_in[:, :1], first.argmax(-1)[:, :-1]], 1)  # (B, T)
        assert not torch.equal(want, tgt_in)  # an untrained model: not the gold tokens
        expected = model.decoder.features(enc, want)
    seen = []
    hook = model.decoder.embedding.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    with torch.no_grad():
        got = TwoPass("argmax").features(model, src, lens, tgt_in, 0.0, scope)
    hook.remove()
    assert len(seen) == 2 and torch.equal(seen[0], tgt_in)  # first pass, then second
    assert torch.equal(seen[1], want)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_a_mixed_ratio_feeds_gold_where_the_coin_says_so():
    """At ratio 0.5 the fed ids are gold where the mask says gold (and at BOS), the first pass's
    argmax elsewhere, and both kinds occur."""
    model = build("plain").train()
    src, lens, tgt_in, _ = batch()
    with torch.no_grad():
        enc = model.encoder(src, lens)
        argmax = model.decoder(enc, tgt_in).argmax(-1)  # (B, T)
        gold = torch.rand(tgt_in.shape) < 0.5  # (B, T)
        gold[:, 0] = False  # BOS is fed whatever the mask says
        _, ids = TwoPass("argmax").mixed_features(model.decoder, enc, tgt_in, gold)
    assert torch.equal(ids[:, 0], tgt_in[:, 0])
    assert torch.equal(ids[:, 1:][gold[:, 1:]], tgt_in[:, 1:][gold[:, 1:]])
    assert torch.equal(ids[:, 1:][~gold[:, 1:]], argmax[:, :-1][~gold[:, 1:]])
    assert (ids != tgt_in).any() and gold[:, 1:].any()


@pytest.mark.parametrize("kernels", ["plain", "fast"])
def test_soft_mix_gradient_flows_through_the_first_pass(kernels):
    """mix soft at ratio 0: the same loss with and without mix_gradient; with it the first
    pass's logits take part in the graph and get a nonzero gradient, and the parameters'
    gradients change; without it the first pass has no graph."""
    model = build(kernels).train()
    firsts = []  # the first pass's logits (the loss projects the second pass's without the module)

    def keep(module, inputs, logits):
        if logits.requires_grad:
            logits.retain_grad()
        firsts.append(logits)

    hook = model.decoder.out.register_forward_hook(keep)
    without = loss_and_grads(model, TwoPass("soft", False), 0.0)
    assert len(firsts) == 1 and not firsts[0].requires_grad  # the first pass: under no_grad
    with_grad = loss_and_grads(model, TwoPass("soft", True), 0.0)
    hook.remove()
    first = firsts[1]
    assert first.requires_grad and first.grad is not None and first.grad.abs().sum() > 0
    assert torch.equal(without[0], with_grad[0])
    diff = {k: float((with_grad[1][k] - without[1][k]).abs().max()) for k in without[1]}
    assert max(v for k, v in diff.items() if k.startswith("decoder.rnn.")) > 1e-6


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("mix,gradient", [("argmax", False), ("sample", False),
                                          ("soft", False), ("soft", True)])
def test_plain_and_fast_models_give_the_same_losses(cell, mix, gradient):
    plain = loss_and_grads(build("plain", cell).train(), TwoPass(mix, gradient), 0.5)
    fast = loss_and_grads(build("fast", cell).train(), TwoPass(mix, gradient), 0.5)
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-5, atol=1e-5)
    for k in plain[1]:
        torch.testing.assert_close(fast[1][k], plain[1][k], rtol=1e-4, atol=1e-5)


def test_two_pass_differs_from_teacher_forcing_below_ratio_one():
    """The test above would pass if passes 2 ignored the ratio: it does not."""
    model = build("plain").train()
    assert not torch.equal(loss_and_grads(model, TwoPass("argmax"), 0.0)[0],
                           loss_and_grads(model, None, 1.0)[0])


@pytest.mark.parametrize("overrides,key", [
    (["teacher_forcing.passes=2", "model.input_feeding=true"], "teacher_forcing.passes"),
    (["teacher_forcing.passes=3"], "teacher_forcing.passes"),
    (["teacher_forcing.passes=2", "teacher_forcing.feed=sample"], "teacher_forcing.feed"),
    (["teacher_forcing.passes=2", "teacher_forcing.mix_gradient=true"],  # mix argmax
     "teacher_forcing.mix_gradient"),
    (["teacher_forcing.mix=soft"], "teacher_forcing.mix"),  # passes 1
])
def test_a_misuse_is_one_line_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        config.load(None, overrides)
    assert key in str(e.value) and "\n" not in str(e.value)


def test_input_feeding_from_a_config_file_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  input_feeding: true\nteacher_forcing:\n  passes: 2\n")
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert "teacher_forcing.passes" in str(e.value) and "\n" not in str(e.value)
    cfg = config.load(None, ["teacher_forcing.passes=2", "teacher_forcing.mix=soft",
                             "teacher_forcing.mix_gradient=true"])
    two_pass = Objective.of(cfg, build("plain"), None, None).two_pass
    assert (two_pass.mix, two_pass.mix_gradient) == ("soft", True)
    assert Objective.of(config.load(None), build("plain"), None, None).two_pass is None


def test_the_cli_documents_two_passes_and_trains_with_them(tmp_path):
    """``seq2seq train --help`` names the keys; a run with two passes and the soft mix
    finishes; with input feeding it stops with one line naming the key, no traceback."""
    assert "teacher_forcing.passes" in seq2seq("train", "--help", cwd=tmp_path).stdout
    common = [*tiny_text_run(tmp_path), "--set", "train.max_steps=3", "--no-progress",
              "--set", "teacher_forcing.passes=2", "--set", "teacher_forcing.ratio=0.5",
              "--set", "teacher_forcing.mix=soft", "--set", "teacher_forcing.mix_gradient=true"]
    seq2seq("train", *common, "--out", "run", cwd=tmp_path)
    assert (tmp_path / "run" / "last.pt").is_file()
    p = seq2seq("train", *common, "--set", "model.input_feeding=true", "--out", "bad",
                cwd=tmp_path, check=False)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "teacher_forcing.passes" in lines[0], p.stderr
    assert "Traceback" not in p.stderr
