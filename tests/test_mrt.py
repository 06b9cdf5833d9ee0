"""Minimum risk training (``train.objective: mrt``, seq2seq/training/mrt.py): the objective's
gradient is the brute-force gradient of the expected cost over an enumerated candidate set, one
candidate equal to the reference with ``mle_weight: 1`` is the token loss, candidates are
deduplicated, and a toy run logs the expected cost in training and validation."""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_PAIRS, seq2seq, tiny_text_run
from seq2seq import config
from seq2seq.config import ModelConfig, MrtConfig
from seq2seq.data.batching import collate
from seq2seq.data.lengths import OutputLimit
from seq2seq.data.tokenizer import BOS, EOS, PAD
from seq2seq.errors import ConfigError
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.training import checkpoint, mrt
from seq2seq.training.objective import Objective

V = 6  # PAD, UNK, BOS, EOS and two tokens: every output of up to 2 tokens can be enumerated
SRC = [[4, 5, 6], [7, 4]]
REFS = [[4, 5], [5]]


def tiny(kernels="plain", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(cell="gru", kernels=kernels, embedding_dim=6, hidden_size=8,
                      dropout=0.0)
    return Seq2Seq.from_config(cfg, 9, V, PAD)


def enumerated(max_len=2, tokens=(1, 4, 5)):
    """Every sequence of ``tokens`` (UNK and the two others) of length 0 to ``max_len``."""
    return [c for n in range(max_len + 1) for c in itertools.product(tokens, repeat=n)]


def brute_force_log_prob(model, src, cand):
    """log P(cand + EOS | src), one sentence alone, no padding, from the logits of forward."""
    logits = model(torch.tensor([src]), torch.tensor([len(src)]),
                   torch.tensor([[BOS, *cand]]))  # (1, T, V)
    logp = torch.log_softmax(logits[0].double(), -1)  # (T, V)
    return sum(logp[t, y] for t, y in enumerate([*cand, EOS]))


class Fixed(mrt.MinimumRisk):
    """The candidates given (the enumerated set), each cost from a table: no sampling."""

    def __init__(self, cfg, cands, costs):
        self.cfg, self.fixed, self.table = cfg, cands, costs

    def candidates(self, model, src, src_len, refs, seed):
        return self.fixed

    def costs(self, cands, refs):
        return [self.table[i][c] for i, cs in enumerate(cands) for c in cs]


@pytest.mark.parametrize("kernels", ["plain", "fast"])
@pytest.mark.parametrize("sharpness", [0.005, 0.7])
def test_the_gradient_is_the_brute_force_expected_risk_gradient(kernels, sharpness):
    """Over every output of up to 2 tokens, the objective divided by the target tokens (what
    the loop minimizes) has the value and gradient of the mean over sentences of
    sum_c softmax(alpha log P(c|x)) cost(c), each log P computed alone from forward's logits."""
    model = tiny(kernels)
    cands = enumerated()
    g = torch.Generator().manual_seed(1)
    costs = [{c: float(torch.rand((), generator=g)) for c in cands} for _ in SRC]
    b = collate(SRC, REFS, range(len(SRC)))
    cfg = MrtConfig(sharpness=sharpness, mle_weight=0.0)
    objective = Objective(model, risk=Fixed(cfg, [cands] * len(SRC), costs))
    out = objective(b.src, b.src_len, b.tgt_in, b.tgt_out)
    assert out.risk == pytest.approx(out.objective.item(), rel=1e-6)
    (out.objective / out.n).backward()
    got = [p.grad.clone() for p in model.parameters()]

    model.zero_grad()
    risks = []
    for i, src in enumerate(SRC):
        logp = torch.stack([brute_force_log_prob(model, src, c) for c in cands])  # (C,)
        q = torch.softmax(sharpness * logp, 0)
        risks.append((q * torch.tensor([costs[i][c] for c in cands], dtype=q.dtype)).sum())
    want = torch.stack(risks).mean()
    want.backward()
    assert out.objective.item() / out.n == pytest.approx(want.item(), rel=1e-5)
    assert any(float(p.grad.abs().max()) > 1e-6 for p in model.parameters())
    for a, p in zip(got, model.parameters()):
        torch.testing.assert_close(a, p.grad.to(a.dtype), rtol=1e-3, atol=1e-7)


def test_the_reference_alone_with_mle_weight_1_is_the_token_loss():
    """One candidate, the reference: its teacher-forced log P is minus the sentence's token
    loss, its expected cost 0; with mle_weight 1 the objective and its gradient are the token
    loss's; with mle_weight 0.5, half of it (the risk adds no gradient)."""
    model = tiny()
    b = collate(SRC, REFS, range(len(SRC)))
    refs = [[tuple(r)] for r in REFS]
    logp = mrt.sequence_log_probs(model, b.src, b.src_len, torch.tensor([0, 1]),
                                  [r for (r,) in refs])  # (2,)
    for i in range(len(SRC)):
        assert logp[i].item() == pytest.approx(brute_force_log_prob(model, SRC[i],
                                                                    REFS[i]).item(), rel=1e-5)

    def run(objective):
        model.zero_grad()
        out = objective(b.src, b.src_len, b.tgt_in, b.tgt_out)
        out.objective.backward()
        return out, [p.grad.clone() for p in model.parameters()]

    token, g_token = run(Objective(model))
    assert token.objective.item() == pytest.approx(-logp.sum().item(), rel=1e-5)
    for w in (1.0, 0.5):
        zero = [{r: 0.0} for (r,) in refs]
        out, g = run(Objective(model, risk=Fixed(MrtConfig(samples=1, mle_weight=w), refs,
                                                 zero)))
        assert out.risk == 0.0 and out.n == token.n and out.nll == pytest.approx(token.nll)
        assert out.objective.item() == pytest.approx(w * token.objective.item(), rel=1e-6)
        for a, r in zip(g, g_token):
            torch.testing.assert_close(a, w * r, rtol=1e-5, atol=1e-7)


def test_candidates_are_deduplicated_and_joined_by_the_reference():
    assert mrt.distinct([[4, 5], [4, 5], [], [4, 5]], [5], True) == [(4, 5), (), (5,)]
    assert mrt.distinct([[4, 5], [5], [5]], [5], True) == [(4, 5), (5,)]
    assert mrt.distinct([[4], [4]], [5], False) == [(4,)]
    # a model that says EOS at once: 16 samples per sentence are one candidate, then the reference
    model = tiny().train()
    with torch.no_grad():
        model.decoder.out.bias[EOS] = 50.0
    risk = mrt.MinimumRisk(MrtConfig(samples=16), tok=None, limit=OutputLimit(1.0, 3))
    b = collate(SRC, REFS, range(len(SRC)))
    cands = risk.candidates(model, b.src, b.src_len, mrt.references(b.tgt_out), seed=5)
    assert cands == [[(), (4, 5)], [(), (5,)]]
    assert model.training  # sampled in eval mode, then put back


def test_samples_follow_the_seed_and_differ_within_a_sentence():
    model = tiny()
    risk = mrt.MinimumRisk(MrtConfig(samples=8, include_reference=False), tok=None,
                           limit=OutputLimit(1.0, 3))
    b = collate(SRC, REFS, range(len(SRC)))
    refs = mrt.references(b.tgt_out)
    assert refs == REFS
    one = risk.candidates(model, b.src, b.src_len, refs, seed=5)
    assert one == risk.candidates(model, b.src, b.src_len, refs, seed=5)
    assert all(len(cs) > 1 for cs in one)  # an untrained model: 8 draws are not all alike
    assert all(len(c) <= 6 for cs in one for c in cs)  # the output limit


def test_costs_and_risk_bounds():
    bleu, chrf = mrt.sentence_cost("bleu"), mrt.sentence_cost("chrf")
    for cost in (bleu, chrf):
        assert cost("a small cat", "a small cat") == pytest.approx(0.0)
        assert cost("x y z", "a small cat") == pytest.approx(1.0)
        assert 0.0 < cost("a small dog", "a small cat") < 1.0
    # sharper Q: the expected cost goes to the cost of the most probable candidate
    logp, cost = torch.tensor([-1.0, -3.0, -2.0]), torch.tensor([0.2, 0.9, 0.5])
    owner = torch.zeros(3, dtype=torch.long)
    assert mrt.expected_risk(logp, cost, owner, 1, 1e-6).item() == pytest.approx(
        cost.mean().item(), rel=1e-5)
    assert mrt.expected_risk(logp, cost, owner, 1, 100.0).item() == pytest.approx(0.2)


@pytest.mark.parametrize("override,key", [("mrt.samples=0", "mrt.samples"),
                                          ("mrt.cost=ter", "mrt.cost"),
                                          ("mrt.sharpness=-1", "mrt.sharpness"),
                                          ("mrt.mle_weight=1.5", "mrt.mle_weight"),
                                          ("mrt.sample=4", "mrt.sample"),
                                          ("train.objective=risk", "train.objective")])
def test_a_misuse_is_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        config.load(None, [override])
    assert key in str(e.value) and "\n" not in str(e.value)


def test_mrt_from_an_untrained_model_is_one_line_naming_the_key(tmp_path):
    """MRT alone (mrt.mle_weight 0) needs a model that can already translate: a new run without
    --init-from is refused before it starts, as is compare-tf's mrt arm without --fine-tune;
    with some token loss, or as fine-tuning, it runs."""
    common = [*tiny_text_run(tmp_path), "--no-progress", "--set", "train.max_steps=2",
              "--set", "train.objective=mrt", "--set", "mrt.samples=2"]
    p = seq2seq("train", *common, "--out", "scratch", cwd=tmp_path, check=False)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "train.objective" in lines[0]
    assert "--init-from" in lines[0] and not (tmp_path / "scratch" / "last.pt").exists()
    p = seq2seq("train", *common, "--resume", "--out", "scratch", cwd=tmp_path, check=False)
    assert p.returncode == 2 and "train.objective" in p.stderr  # --resume with nothing there
    seq2seq("train", *common, "--set", "mrt.mle_weight=0.5", "--out", "mixed", cwd=tmp_path)
    assert (tmp_path / "mixed" / "last.pt").is_file()
    p = seq2seq("compare-tf", "--settings", "constant:1.0", "mrt", "--out", "cmp",
                cwd=tmp_path, check=False)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "setting mrt" in lines[0]
    assert "--fine-tune" in lines[0] and not (tmp_path / "cmp").exists()
    p = seq2seq("compare-tf", "--set", "train.objective=mrt", "--fine-tune", "5", "--out", "cmp",
                cwd=tmp_path, check=False)  # stage 1 would train MRT alone from scratch
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "stage 1" in lines[0]


def test_a_toy_run_with_mrt_logs_the_expected_cost(tmp_path):
    """seq2seq train with train.objective=mrt, fine-tuning a teacher-forced run
    (--init-from): it finishes, metrics.jsonl holds the expected cost of training and
    validation, in [0, 1], and a run stopped half-way and resumed ends with the same weights."""
    common = [*tiny_text_run(tmp_path), "--no-progress"]
    seq2seq("train", *common, "--set", "train.max_steps=3", "--out", "mle", cwd=tmp_path)
    seq2seq("train", *common, "--set", "train.max_steps=6", "--set", "train.objective=mrt",
            "--set", "mrt.samples=3", "--init-from", "mle", "--out", "mrt", cwd=tmp_path)
    records = [json.loads(l) for l in (tmp_path / "mrt" / "metrics.jsonl").read_text()
               .splitlines()]
    assert [r["step"] for r in records] == [3, 6]
    for r in records:
        assert 0.0 <= r["train_mrt_risk"] <= 1.0 and 0.0 <= r["valid_mrt_risk"] <= 1.0
    mle = (tmp_path / "mle" / "metrics.jsonl").read_text()
    assert "mrt_risk" not in mle
    # the samples draw from the run's saved generators: stopped at step 3 and resumed, the same
    mrt_args = [*common, "--set", "train.objective=mrt", "--set", "mrt.samples=3"]
    seq2seq("train", *mrt_args, "--set", "train.max_steps=3", "--init-from", "mle",
            "--out", "half", cwd=tmp_path)
    seq2seq("train", *mrt_args, "--set", "train.max_steps=6", "--resume", "--out", "half",
            cwd=tmp_path)
    a, b = (checkpoint.load(tmp_path / run / "last.pt")["model"] for run in ("mrt", "half"))
    assert any(not torch.equal(a[k], checkpoint.load(tmp_path / "mle" / "last.pt")["model"][k])
               for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_mrt_under_ddp_runs_and_logs_the_expected_cost(tmp_path):
    """torchrun with 2 processes: the objective (sampling included) is what DDP wraps, the
    epoch's tail of one sentence included (the other process joins with a ghost shard, no
    sentences); rank 0 logs the expected cost of both, and what was minimized is the
    interpolation of the token loss and the expected cost, as configured."""
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed")
    rows = [{"src": s, "tgt": " ".join(reversed(s.split()))} for s, _ in TINY_PAIRS[:9]]
    for split in ("train", "valid"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "seq2seq", "train",
         "--set", "data.path=json", "--set", "data.test_split=null",
         "--set", "data.data_files={train: train.jsonl, validation: valid.jsonl}",
         "--set", "model.embedding_dim=8", "--set", "model.hidden_size=8",
         "--set", "train.batch_size=4", "--set", "train.max_steps=3", "--set", "train.eval_every=3",
         "--set", "train.objective=mrt", "--set", "mrt.samples=2", "--set", "mrt.mle_weight=0.5",
         "--out", "two", "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert p.returncode == 0, p.stderr[-3000:]
    (rec,) = [json.loads(l) for l in (tmp_path / "two" / "metrics.jsonl").read_text()
              .splitlines()]
    assert 0.0 <= rec["train_mrt_risk"] <= 1.0 and 0.0 <= rec["valid_mrt_risk"] <= 1.0
    assert rec["train_objective"] == pytest.approx(
        0.5 * rec["train_loss"] + 0.5 * rec["train_mrt_risk"], rel=1e-4)
