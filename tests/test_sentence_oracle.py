"""The sentence-level oracle (``teacher_forcing.oracle: sentence``,
seq2seq/training/sentence_oracle.py): with one beam and no noise it is the greedy output of the
reference's length, every oracle has that length, the fed candidate has the best sentence BLEU
of the beam, ratio 1 is teacher forcing, the fed ids are the gold or the oracle as the coins
say, plain and fast models agree, misuses are one line naming the key, and a toy run logs the
search's cost."""

import json

import pytest
import torch
from sacrebleu.metrics import BLEU

from conftest import seq2seq, tiny_text_run
from seq2seq import config
from seq2seq.config import ModelConfig, OracleConfig
from seq2seq.data.batching import collate
from seq2seq.data.tokenizer import BOS, EOS, PAD
from seq2seq.errors import ConfigError
from seq2seq.model.decoder import gold_mask
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.training.objective import Objective
from seq2seq.training.sentence_oracle import SentenceOracle, length_constrained_beam

V = 14  # PAD, UNK, BOS, EOS and 10 tokens
SRC = [[4, 5, 6, 7], [8, 9], [10, 4, 11, 12, 13], [5, 5, 6]]
REFS = [[4, 5, 6], [9, 8, 7, 6, 5], [], [13, 12]]  # lengths 3, 5, 0 and 2


class IdText:
    """A tokenizer's ``decode_tgt`` over ids: each id a word (BLEU on ids)."""

    @staticmethod
    def decode_tgt(rows):
        return [" ".join(f"w{i}" for i in r) for r in rows]


def tiny(kernels="plain", input_feeding=False, dropout=0.0):
    torch.manual_seed(0)
    cfg = ModelConfig(cell="gru", kernels=kernels, embedding_dim=8, hidden_size=8,
                      dropout=dropout, input_feeding=input_feeding)
    return Seq2Seq.from_config(cfg, V, V, PAD)


def batch():
    return collate(SRC, REFS, range(len(SRC)))


def greedy_of_length(model, src, length):
    """One sentence alone: the argmax at each step, EOS (and PAD, BOS) never, ``length`` steps."""
    model.eval()
    with torch.no_grad():
        enc = model.encoder(torch.tensor([src]), torch.tensor([len(src)]))
        state, y, out = model.decoder.start(enc), torch.tensor([BOS]), []
        for _ in range(length):
            logits, state, _ = model.decoder.step(y, state, enc)  # (1, V)
            logits[:, [PAD, BOS, EOS]] = float("-inf")
            y = logits.argmax(-1)
            out.append(int(y))
    return out


def oracle(beam=1, noise=0.0):
    return SentenceOracle(OracleConfig(beam=beam, noise=noise), IdText())


@pytest.mark.parametrize("input_feeding", [False, True])
def test_one_beam_without_noise_is_the_greedy_output_of_the_reference_length(input_feeding):
    model = tiny(input_feeding=input_feeding).train()
    b = batch()
    found = oracle().search(model, b.src, b.src_len, b.tgt_out)  # (B, T)
    assert model.training  # searched in eval mode, then put back
    assert found.shape == b.tgt_out.shape
    for row, src, ref in zip(found.tolist(), SRC, REFS):
        assert row[:len(ref)] == greedy_of_length(model, src, len(ref))
        assert set(row[len(ref):]) <= {PAD}


@pytest.mark.parametrize("beam,noise", [(1, 1.0), (3, 0.0), (4, 2.0)])
def test_every_oracle_has_exactly_the_references_length(beam, noise):
    model = tiny()
    b = batch()
    torch.manual_seed(5)
    found = oracle(beam, noise).search(model, b.src, b.src_len, b.tgt_out)
    for row, ref in zip(found.tolist(), REFS):
        assert all(t not in (PAD, BOS, EOS) for t in row[:len(ref)])
        assert set(row[len(ref):]) <= {PAD}
    lengths = torch.tensor([len(r) for r in REFS])
    tokens, scores = length_constrained_beam(model.eval(), b.src, b.src_len, lengths, beam,
                                             noise)  # (B, K, T), (B, K)
    assert tokens.shape == (len(REFS), beam, max(lengths))
    for cands, ref in zip(tokens.tolist(), REFS):
        for c in cands:
            assert set(c[len(ref):]) <= {PAD}
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first


class Spy(SentenceOracle):
    """Records the candidates the oracle chose among, and its choices."""

    def pick(self, cands, valid, refs):
        best = super().pick(cands, valid, refs)
        self.seen = (cands, valid, refs, best)
        return best


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_the_oracle_is_the_beams_candidate_with_the_best_sentence_bleu(noise):
    """Scored here with sacreBLEU directly (smoothed, effective order): the candidate fed is a
    maximum over the sentence's beam, and not always the search's best."""
    model = tiny()
    b = batch()
    spy = Spy(OracleConfig(beam=6, noise=noise), IdText())
    torch.manual_seed(2)
    found = spy.search(model, b.src, b.src_len, b.tgt_out)
    cands, valid, refs, best = spy.seen
    assert refs == REFS
    assert valid == [[True] * 6 if ref else [True] + [False] * 5 for ref in REFS]  # "" is one
    bleu = BLEU(effective_order=True)
    for i, ref in enumerate(refs):
        ref_text = IdText.decode_tgt([ref])[0]
        scores = [bleu.sentence_score(IdText.decode_tgt([c])[0], [ref_text]).score
                  for c, v in zip(cands[i], valid[i]) if v]
        assert scores[best[i]] == max(scores)
        assert found[i, :len(ref)].tolist() == cands[i][best[i]]
    assert any(k > 0 for k in best)  # the choice is BLEU's, not the search's order


def losses(objective, ratio, seed=7):
    b = batch()
    torch.manual_seed(seed)
    out = objective(b.src, b.src_len, b.tgt_in, b.tgt_out, ratio)
    return out


@pytest.mark.parametrize("kernels", ["plain", "fast"])
def test_ratio_one_is_teacher_forcing_exactly(kernels):
    model = tiny(kernels, dropout=0.3).train()
    forced = losses(Objective(model), 1.0)
    with_oracle = losses(Objective(model, oracle=oracle(4, 1.0)), 1.0)
    assert torch.equal(forced.objective, with_oracle.objective)
    assert forced.nll == with_oracle.nll and forced.n == with_oracle.n


def test_the_fed_ids_are_gold_where_the_coin_says_and_the_oracle_elsewhere():
    model = tiny()
    b = batch()
    o = oracle(beam=3, noise=0.0)  # no noise: the search draws no random numbers
    found = o.search(model, b.src, b.src_len, b.tgt_out)  # (B, T)
    oracle_in = torch.cat([b.tgt_in[:, :1], found[:, :-1]], dim=1)  # (B, T): BOS, oracle
    torch.manual_seed(4)
    fed = o.feed(model, b.src, b.src_len, b.tgt_in, b.tgt_out, 0.5)
    torch.manual_seed(4)
    gold = gold_mask(*b.tgt_in.shape, 0.5)
    assert torch.equal(fed, torch.where(gold, b.tgt_in, oracle_in))
    assert (~gold[:, 1:]).any() and gold[:, 1:].any()
    assert torch.equal(o.feed(model, b.src, b.src_len, b.tgt_in, b.tgt_out, 0.0), oracle_in)
    # ratio 0: the loss is the teacher-forced loss of the oracle's ids, in one pass
    with torch.no_grad():
        ratio0 = losses(Objective(model, oracle=o), 0.0)
        forced = Objective(model)(b.src, b.src_len, oracle_in, b.tgt_out, 1.0)
    assert torch.equal(ratio0.objective, forced.objective)


@pytest.mark.parametrize("input_feeding", [False, True])
def test_plain_and_fast_models_give_the_same_oracle_and_loss(input_feeding):
    plain, fast = tiny("plain", input_feeding), tiny("fast", input_feeding)
    fast.load_state_dict(plain.state_dict())
    b = batch()
    found = []
    for model in (plain, fast):
        torch.manual_seed(3)
        found.append(oracle(4, 1.0).search(model, b.src, b.src_len, b.tgt_out))
    assert torch.equal(found[0], found[1])
    a, f = (losses(Objective(m, oracle=oracle(4, 1.0)), 0.5) for m in (plain, fast))
    torch.testing.assert_close(a.objective, f.objective, rtol=1e-5, atol=1e-5)
    assert a.n == f.n


@pytest.mark.parametrize("override,key", [
    (["oracle.beam=0"], "oracle.beam"),
    (["oracle.noise=-0.5"], "oracle.noise"),
    (["oracle.beams=2"], "oracle.beams"),
    (["teacher_forcing.oracle=word"], "teacher_forcing.oracle"),
    (["teacher_forcing.oracle=sentence", "teacher_forcing.feed=sample"], "feed"),
    (["teacher_forcing.oracle=sentence", "train.objective=mrt"], "train.objective"),
])
def test_a_misuse_is_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        config.load(None, override)
    assert key in str(e.value) and "\n" not in str(e.value)
    assert config.load(None, ["teacher_forcing.oracle=sentence"]).oracle == OracleConfig()


def test_a_toy_run_logs_the_oracle_search_cost_and_a_misuse_stops_in_one_line(tmp_path):
    common = [*tiny_text_run(tmp_path), "--set", "train.max_steps=3",
              "--set", "teacher_forcing.oracle=sentence",
              "--set", "oracle.beam=2", "--no-progress"]
    p = seq2seq("train", *common, "--set", "teacher_forcing.ratio=0.5", "--out", "run",
                cwd=tmp_path)
    (rec,) = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text()
              .splitlines()]
    assert rec["oracle_ms_per_step"] > 0 and 0 < rec["oracle_share"] < 1
    assert "oracle search" in p.stdout + p.stderr
    bad = seq2seq("train", *common, "--set", "train.objective=mrt", "--out", "bad",
                  cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    (line,) = bad.stderr.strip().splitlines()
    assert "teacher_forcing.oracle" in line and "train.objective" in line
