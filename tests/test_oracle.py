"""Exact-oracle error accumulation (seq2seq.compare.oracle): the curves from hand-made losses,
and from stand-in models whose errors are known, the bootstrap band, the task filter."""

import math

import pytest
import torch

from seq2seq.compare.oracle import (EDIT_ORACLE_TASKS, FREE_MARGIN, ORACLE_TASKS,
                                    accumulation, after_first_error, bootstrap_band, csv_rows,
                                    measure, oracle_losses, oracle_task, seed_mean)
from seq2seq.data.batching import IdPairs
from seq2seq.data.tokenizer import BOS, EOS, PAD

V = 10


class ReverseOracleModel:
    """A stand-in model of the reverse task: after a prefix that is the reference so far it
    gives the reference token probability 0.9 (at output position ``err_at``: 0.3, with 0.6 on
    a wrong token, its argmax); after any other prefix, the uniform distribution."""

    def __init__(self, err_at=None):
        self.err_at = err_at

    def eval(self):
        return self

    def __call__(self, src, src_len, tgt_in, ratio):
        B, T = tgt_in.shape
        logits = torch.zeros(B, T, V)
        for b in range(B):
            ref = src[b, :int(src_len[b])].flip(0).tolist() + [EOS]
            prefix = []  # the tokens fed after BOS
            for l in range(T):
                if prefix == ref[:l] and l < len(ref):
                    if l == self.err_at:
                        p = torch.full((V,), 0.1 / (V - 2))
                        p[ref[l]], p[wrong_token(ref[l])] = 0.3, 0.6
                    else:
                        p = torch.full((V,), 0.1 / (V - 1))
                        p[ref[l]] = 0.9
                    logits[b, l] = p.log()
                gold = ratio >= 1 and l + 1 < T
                nxt = int(tgt_in[b, l + 1]) if gold else int(logits[b, l].argmax())
                prefix.append(nxt)
        return logits


def wrong_token(t):
    return 4 + (t - 4 + 1) % (V - 4)  # another symbol id


def reverse_data(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = [torch.randint(4, V, (n,), generator=g).tolist() for n in lengths]
    tgt = [s[::-1] for s in src]
    return IdPairs(src, tgt, [""] * len(src), [""] * len(src))


def test_a_perfect_model_has_zero_excess_accumulated_error():
    data = reverse_data([3, 7, 5, 1, 7, 4, 6, 2])
    x = oracle_losses(ReverseOracleModel(), data, batch_size=3, device="cpu")
    assert x["mask"].sum(1).tolist() == [n + 1 for n in (3, 7, 5, 1, 7, 4, 6, 2)]
    assert not bool(x["wrong_free"].any())
    c = accumulation(x["loss_gold"], x["loss_free"], x["mask"], x["wrong_free"])
    assert c["n"] == [8, 8, 7, 6, 5, 4, 3, 2]  # outputs reaching each position (EOS included)
    assert c["exaccerr"] == [0.0] * 8 and c["exaccerr_pct"] == [0.0] * 8
    assert c["exaccerr_lo"] == [0.0] * 8 and c["exaccerr_hi"] == [0.0] * 8
    assert c["accerr_gold"] == pytest.approx([-math.log(0.9) * (l + 1) for l in range(8)],
                                             rel=1e-5)


def test_a_model_that_errs_once_accumulates_after_the_error():
    """Every output errs at position t = 2 (0-based): its own prefix then leaves the oracle's
    path and every later oracle token costs log V; with gold prefixes only t costs more."""
    t, n, T = 2, 6, 7  # sources of 6 symbols: 7 outputs with EOS
    data = reverse_data([n] * 5)
    x = oracle_losses(ReverseOracleModel(err_at=t), data, batch_size=2, device="cpu")
    good, bad, lost = -math.log(0.9), -math.log(0.3), math.log(V)
    expect_gold = [bad if l == t else good for l in range(T)]
    expect_free = [good if l < t else bad if l == t else lost for l in range(T)]
    assert x["loss_gold"][0].tolist() == pytest.approx(expect_gold, rel=1e-4)
    assert x["loss_free"][0].tolist() == pytest.approx(expect_free, rel=1e-4)
    c = accumulation(x["loss_gold"], x["loss_free"], x["mask"], x["wrong_free"])
    expect_ex = [0.0 if l <= t else (l - t) * (lost - good) for l in range(T)]
    assert c["exaccerr"] == pytest.approx(expect_ex, abs=1e-4)
    acc_free = [sum(expect_free[:l + 1]) for l in range(T)]
    assert c["exaccerr_pct"] == pytest.approx(
        [100 * e / a for e, a in zip(expect_ex, acc_free)], abs=1e-3)
    # greedy errors: the first at t, then every position (the uniform argmax is id 0, PAD)
    assert c["err_clean"][:t] == [0.0] * t and c["err_clean"][t] == 1.0
    assert all(math.isnan(v) for v in c["err_clean"][t + 1:])  # no clean prefix after t
    assert c["err_after"][t + 1:] == [1.0] * (T - t - 1) and c["n_after"][t + 1] == 5


def test_accumulation_from_hand_made_losses():
    """Two outputs of lengths 4 and 2; the first errs once at position 1 (+1 nat after it)."""
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    gold = torch.tensor([[0.2, 0.4, 0.2, 0.2], [0.2, 0.2, 0.0, 0.0]])
    free = torch.tensor([[0.2, 0.4, 1.2, 1.2], [0.2, 0.2, 9.9, 9.9]])  # 9.9: padding, ignored
    c = accumulation(gold, free, mask, resamples=0)
    assert c["n"] == [2, 2, 1, 1]
    assert c["loss_gold"] == pytest.approx([0.2, 0.3, 0.2, 0.2])
    assert c["accerr_gold"] == pytest.approx([0.2, 0.5, 0.7, 0.9])
    assert c["accerr_free"] == pytest.approx([0.2, 0.5, 1.7, 2.9])
    assert c["exaccerr"] == pytest.approx([0.0, 0.0, 1.0, 2.0])
    assert c["exaccerr_pct"] == pytest.approx([0.0, 0.0, 100 / 1.7, 200 / 2.9])
    assert "exaccerr_lo" not in c


def test_error_rate_before_and_after_the_first_error():
    wrong = torch.tensor([[0, 1, 0, 1], [0, 0, 0, 1], [1, 1, 0, 0]], dtype=torch.bool)
    mask = torch.ones(3, 4, dtype=torch.bool)
    r = after_first_error(wrong, mask)
    assert r["n_clean"] == [3, 2, 1, 1] and r["n_after"] == [0, 1, 2, 2]
    assert r["err_clean"][:3] == [1 / 3, 1 / 2, 0.0] and r["err_clean"][3] == 1.0
    assert math.isnan(r["err_after"][0])
    assert r["err_after"][1:] == [1.0, 0.0, 0.5]


def test_bootstrap_band_covers_the_estimate_and_is_exact_for_a_constant():
    g = torch.Generator().manual_seed(0)
    m = torch.ones(50, 6)
    lo, hi = bootstrap_band(torch.full((50, 6), 0.5), m, 100)
    assert lo.tolist() == pytest.approx([0.5 * (l + 1) for l in range(6)])
    assert hi.tolist() == pytest.approx(lo.tolist())
    diff = torch.randn(50, 6, generator=g)
    lo, hi = bootstrap_band(diff, m, 300)
    est = diff.mean(0).cumsum(0)
    assert bool((lo <= est).all() and (est <= hi).all() and (hi - lo > 0.1).all())


def test_measure_and_csv_rows_name_the_columns_exaccerr():
    data = reverse_data([3, 4, 2])
    res = measure(ReverseOracleModel(err_at=1), {"test": data}, 8, "cpu")
    assert res["test"]["exaccerr_total"] > 0 and 0 < res["test"]["exaccerr_total_pct"] < 100
    from types import SimpleNamespace
    rows = csv_rows([SimpleNamespace(label="a")], {"a": [{"seed": 1, "exaccerr": res}]})
    assert len(rows) == 5 and rows[0]["set"] == "test" and rows[-1]["position"] == 5
    assert {"exaccerr", "exaccerr_pct", "exaccerr_lo", "exaccerr_hi"} <= set(rows[0])


def test_a_real_model_sees_the_same_first_prefix_both_ways():
    from seq2seq.config import ModelConfig
    from seq2seq.model.seq2seq import Seq2Seq

    torch.manual_seed(0)
    model = Seq2Seq.from_config(ModelConfig(embedding_dim=8, hidden_size=8), V, V, PAD)
    data = reverse_data([3, 5, 4, 6])
    x = oracle_losses(model, data, 2, "cpu")
    torch.testing.assert_close(x["loss_free"][:, 0], x["loss_gold"][:, 0])  # BOS both ways
    assert bool((x["loss_free"][~x["mask"]] == 0).all())
    assert float(x["loss_free"][x["mask"]].min()) > 0


def test_the_toy_tasks_have_an_oracle_of_their_kind():
    assert oracle_task(None, "recipes/reverse.yaml", None) == "reverse"
    assert oracle_task(None, "my.yaml", "sort") == "sort"
    assert oracle_task(None, "recipes/reverse_small.yaml", None) == "reverse_small"
    assert oracle_task(None, "recipes/commands.yaml", None) == "commands"  # the minimal edit
    assert oracle_task(None, "recipes/commands_length.yaml", None) == "commands_length"
    assert oracle_task(None, "recipes/number_words.yaml", "digits2words") == "digits2words"
    assert oracle_task("text", "recipes/multi30k.yaml", None) is None
    assert oracle_task(None, "recipes/multi30k.yaml", None) is None
    from seq2seq.data.toy import TASKS
    assert set(ORACLE_TASKS) | set(EDIT_ORACLE_TASKS) == set(TASKS)  # every toy task, once
    assert not set(ORACLE_TASKS) & set(EDIT_ORACLE_TASKS)


def test_the_mean_over_seeds_and_its_band_over_seeds_then_sentences():
    """Two seeds with no sentence variance (every draw the seed's own curve): the band runs
    from one seed's curve to the other's; a shorter curve keeps its cumulative sum."""
    one = {"n": [4, 4, 2], "loss_gold": [0.1, 0.1, 0.1], "loss_free": [0.1, 1.1, 2.1],
           "accerr_gold": [0.1, 0.2, 0.3], "accerr_free": [0.1, 1.2, 3.3],
           "exaccerr": [0.0, 1.0, 3.0], "err_clean": [0.0, 0.5, 1.0], "n_clean": [4, 4, 2],
           "err_after": [float("nan")] * 3, "n_after": [0, 0, 0],
           "draws": [[0.0, 1.0, 3.0]] * 7}
    two = {"n": [4, 4], "loss_gold": [0.1, 0.1], "loss_free": [0.1, 3.1],
           "accerr_gold": [0.1, 0.2], "accerr_free": [0.1, 3.2], "exaccerr": [0.0, 3.0],
           "err_clean": [0.0, 0.0], "n_clean": [4, 2], "err_after": [float("nan"), 1.0],
           "n_after": [0, 2]}  # measured without draws: its own curve only
    m = seed_mean([one, two])
    assert m["n"] == [8, 8, 2] and m["n_after"] == [0, 2, 0]
    assert m["exaccerr"] == pytest.approx([0.0, 2.0, 3.0])
    assert m["loss_free"] == pytest.approx([0.1, 2.1, 1.05])
    assert m["exaccerr_pct"] == pytest.approx([0.0, 100 * 2.0 / 2.2, 100 * 3.0 / 3.25])
    assert m["err_clean"] == pytest.approx([0.0, 2 / 6, 1.0])  # pooled over the counts
    assert math.isnan(m["err_after"][0]) and m["err_after"][1] == 1.0
    assert m["exaccerr_lo"] == pytest.approx([0.0, 1.0, 3.0])
    assert m["exaccerr_hi"] == pytest.approx([0.0, 3.0, 3.0])
    from types import SimpleNamespace
    rows = csv_rows([SimpleNamespace(label="a")], {"a": [
        {"seed": 1, "exaccerr": {"test": one}}, {"seed": 2, "exaccerr": {"test": two}}]})
    assert [r["seed"] for r in rows] == [1] * 3 + [2] * 2 + ["mean"] * 3
    assert rows[-2]["exaccerr"] == pytest.approx(2.0) and "draws" not in rows[0]


def test_measure_keeps_the_draws_that_the_seed_band_resamples():
    data = reverse_data([3, 4, 2, 5, 3])
    res = measure(ReverseOracleModel(err_at=1), {"test": data}, 8, "cpu", draws=True)["test"]
    assert len(res["draws"]) == 200 and len(res["draws"][0]) == len(res["n"])
    m = seed_mean([res, res])  # one seed twice: the seeds add no spread, the sentences do
    assert m["exaccerr"] == pytest.approx(res["exaccerr"])
    assert m["exaccerr_lo"][-1] < res["exaccerr"][-1] < m["exaccerr_hi"][-1]
    assert m["exaccerr_hi"][-1] - m["exaccerr_lo"][-1] < res["exaccerr_hi"][-1] - res[
        "exaccerr_lo"][-1]  # the mean of two independent sentence resamples: narrower


def test_a_real_model_against_the_edit_oracle():
    """The free-running pass over the model's own output: its first position sees BOS as the
    gold pass does (the same set, the reference's first token); its positions end at its EOS."""
    from seq2seq.config import ModelConfig
    from seq2seq.model.seq2seq import Seq2Seq

    torch.manual_seed(0)
    model = Seq2Seq.from_config(ModelConfig(embedding_dim=8, hidden_size=8), V, V, PAD)
    data = reverse_data([3, 5, 4, 6])
    x = oracle_losses(model, data, 2, "cpu", edit=True)
    torch.testing.assert_close(x["loss_free"][:, 0], x["loss_gold"][:, 0])
    assert bool((x["loss_free"][~x["mask_free"]] == 0).all())
    own = x["mask_free"].sum(1)
    assert bool((own >= 1).all() and (own <= torch.tensor([4, 6, 5, 7]) + FREE_MARGIN).all())
    c = measure(model, {"v": data}, 2, "cpu", task="commands")["v"]
    assert c["n"] == x["mask_free"].sum(0).tolist() and c["n_gold"][0] == 4


def test_the_oracle_accepts_the_reverse_small_pairs():
    from seq2seq.data import toy
    from seq2seq.decoding.hallucination import oracle_output
    dd = toy.reverse(seed=2, train_size=50, valid_size=5, test_size=5, **toy.REVERSE_SMALL)
    for src, tgt in zip(dd["train"]["src"], dd["train"]["tgt"]):  # the reference is the oracle
        assert oracle_output("reverse_small", src) == tgt.split()
        assert len(tgt.split()) == len(src.split())  # position-aligned


def test_the_free_runs_errors_are_counted_on_the_tokens_greedy_picks():
    """A perfect model whose padding logit is the largest everywhere (the oracle token second):
    greedy search never picks padding, so its free run makes no error."""
    from seq2seq.compare.oracle import greedy_pick

    class PadFirst(ReverseOracleModel):
        def __call__(self, src, src_len, tgt_in, ratio):
            logits = super().__call__(src, src_len, tgt_in, ratio)
            return logits.index_fill(-1, torch.tensor([PAD]), 1e3)

    data = reverse_data([3, 5, 2, 4])
    x = oracle_losses(PadFirst(), data, batch_size=2, device="cpu")
    assert not x["wrong_free"].any()
    assert (greedy_pick(torch.tensor([[9.0, 1.0, 5.0]])) == 2).all()  # PAD is id 0
