"""Error injection (seq2seq.compare.injection): a model that recovers and one that does not,
the wrong tokens drawn, and the clean run against the oracle module's free-running numbers."""

import math
from types import SimpleNamespace

import pytest
import torch

from seq2seq.compare.injection import _random_other, _second, inject, probe
from seq2seq.compare.oracle import oracle_losses
from seq2seq.data.batching import IdPairs
from seq2seq.data.tokenizer import BOS, EOS, PAD

V = 10


class ReverseStepModel:
    """A stand-in with the decoder's step interface for the reverse task: the reference token
    gets probability 0.9 at every position (``recovers``) or only while the prefix is the
    reference so far (else the uniform distribution, whose argmax is id 0, padding)."""

    def __init__(self, recovers: bool):
        self.recovers = recovers
        self.decoder = SimpleNamespace(out=SimpleNamespace(out_features=V),
                                       start=self.start, step=self.step)

    def eval(self):
        return self

    def encoder(self, src, src_len):
        refs = [src[b, :int(src_len[b])].flip(0).tolist() + [EOS] for b in range(len(src))]
        T = max(map(len, refs)) + 8
        return torch.tensor([r + [PAD] * (T - len(r)) for r in refs])  # (B, T) the oracle

    def start(self, ref):
        return 0, torch.ones(ref.size(0), dtype=torch.bool)

    def step(self, y, state, ref):
        l, ok = state
        if l > 0:
            ok = ok & (y == ref[:, l - 1])  # y: the token fed for output position l - 1
        p = torch.full((ref.size(0), V), 1.0 / V)
        good = torch.ones_like(ok) if self.recovers else ok
        sure = torch.full((V,), 0.1 / (V - 1)).expand(ref.size(0), V).clone()
        sure.scatter_(1, ref[:, l:l + 1], 0.9)
        p = torch.where(good.unsqueeze(1), sure, p)
        return p.log(), (l + 1, ok), None


def reverse_data(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = [torch.randint(4, V, (n,), generator=g).tolist() for n in lengths]
    return IdPairs(src, [s[::-1] for s in src], [""] * len(src), [""] * len(src))


LENGTHS = [3, 6, 5, 1, 7, 4, 2]


@pytest.mark.parametrize("how", ["random", "second"])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_a_model_that_recovers_and_one_that_does_not(how, k):
    t = 1
    data = reverse_data(LENGTHS)
    n = sum(n + 1 > t + k for n in LENGTHS)  # outputs (EOS included) with a suffix
    for recovers in (True, False):
        model = ReverseStepModel(recovers)
        clean = inject(model, data, t, k, "gold", 3, "cpu")
        hit = inject(model, data, t, k, how, 3, "cpu")
        assert clean["n"] == hit["n"] == n
        assert clean["acc"] == clean["exact"] == 100.0
        assert clean["loss"] == pytest.approx(-math.log(0.9), rel=1e-5)
        if recovers:
            assert hit["acc"] == hit["exact"] == 100.0
        else:  # lost after the first wrong token: the uniform distribution's argmax, PAD
            assert hit["acc"] == hit["exact"] == 0.0
            assert hit["loss"] == pytest.approx(math.log(V), rel=1e-5)


def test_probe_names_every_arm_and_k():
    res = probe(ReverseStepModel(False), reverse_data(LENGTHS), 4, "cpu", ks=(1, 2))
    assert set(res) == {f"{h}_{k}" for h in ("gold", "random", "second") for k in (1, 2)}


def test_random_wrong_tokens_are_uniform_over_the_others():
    noise = torch.tensor([i for i in range(V) if i not in (PAD, BOS)])
    gold = torch.tensor([5] * 40000)
    g = torch.Generator().manual_seed(0)
    drawn = _random_other(noise, gold, g)
    assert not bool(((drawn == 5) | (drawn == PAD) | (drawn == BOS)).any())
    counts = torch.bincount(drawn, minlength=V)[[i for i in noise.tolist() if i != 5]]
    assert float((counts.float() / 40000 - 1 / 7).abs().max()) < 0.01
    gold_pad = torch.tensor([PAD] * 1000)  # a gold id outside noise: any noise id
    assert set(_random_other(noise, gold_pad, g).tolist()) == set(noise.tolist())


def test_second_choice_is_the_best_token_but_the_gold_one():
    logits = torch.tensor([[0.0, 3.0, 2.0, 1.0], [0.0, 3.0, 2.0, 1.0]])
    assert _second(logits, torch.tensor([1, 2])).tolist() == [2, 1]


def test_the_clean_run_from_the_start_is_free_running_greedy():
    """t = k = 0: the model runs free from BOS, so the suffix accuracy and loss are those of
    the oracle module's free-running pass (the decoder's step and its forward agree)."""
    from seq2seq.config import ModelConfig
    from seq2seq.model.seq2seq import Seq2Seq

    torch.manual_seed(0)
    model = Seq2Seq.from_config(ModelConfig(embedding_dim=8, hidden_size=8), V, V, PAD)
    data = reverse_data(LENGTHS)
    res = inject(model, data, 0, 0, "gold", 3, "cpu")
    x = oracle_losses(model, data, 3, "cpu")
    m = x["mask"]
    assert res["n"] == len(LENGTHS)
    assert res["acc"] == pytest.approx(100 * (1 - float(x["wrong_free"][m].float().mean())))
    assert res["loss"] == pytest.approx(float(x["loss_free"][m].mean()), rel=1e-4)


def test_the_probe_decodes_as_greedy_search_never_picking_padding():
    """A model that puts padding first everywhere (and the reference token second) is probed
    on its best other tokens, as greedy search outputs them: no search ever emits padding."""
    model = ReverseStepModel(recovers=True)
    step = model.step

    def pad_first(y, state, ref):
        logp, state, w = step(y, state, ref)
        return logp.index_fill(1, torch.tensor([PAD]), 10.0), state, w

    model.decoder.step = pad_first
    data = reverse_data(LENGTHS)
    for how in ("gold", "second"):
        r = inject(model, data, 1, 1, how, 3, "cpu")
        assert r["acc"] == r["exact"] == 100.0, how


def test_the_table_averages_drops_over_positions_then_seeds():
    """drops: clean minus injected per seed, averaged over the positions probed on some output
    (n 0 left out), then listed per seed; the table and section show it, labelled with what it
    is against; a translation probe of another size than asked is left out of the rows."""
    from types import SimpleNamespace

    from seq2seq.compare.injection import REFERENCE, csv_rows, drops, markdown, section

    def res(gold, rnd, n=10):
        return {"t": 0, "n": n, "acc": gold, "exact": 0.0, "loss": 1.0}, \
               {"t": 0, "n": n, "acc": rnd, "exact": 0.0, "loss": 2.0}

    def probe_of(values):  # {t: (gold acc, random acc, n)} at k = 1
        out = {}
        for t, (g, r, n) in values.items():
            out[f"gold_1_t{t}"], out[f"random_1_t{t}"] = (dict(v, t=t) for v in res(g, r, n))
        return {"test": out}

    results = {"a": [
        {"seed": 1, "injection": probe_of({2: (50, 40, 10), 5: (60, 40, 10), 10: (0, 0, 0)}),
         "injection_against": REFERENCE, "injection_sentences": 10},
        {"seed": 2, "injection": probe_of({2: (50, 30, 10), 5: (50, 30, 10)}),
         "injection_against": REFERENCE, "injection_sentences": 10},
        {"seed": 3, "injection": probe_of({2: (0, 0, 10)}),  # probed at another size
         "injection_against": REFERENCE, "injection_sentences": 99}]}
    rows = csv_rows([SimpleNamespace(label="a")], results, 10)
    assert {r["seed"] for r in rows} == {1, 2} and {r["against"] for r in rows} == {REFERENCE}
    d = drops(rows)
    assert d[("test", "a", "random", 1)] == [15.0, 20.0]  # (10 + 20) / 2; (20 + 20) / 2
    assert d[("test", "a", "gold", 1)] == [55.0, 50.0]
    assert drops(rows, "loss")[("test", "a", "random", 1)] == [-1.0, -1.0]
    table = markdown(rows)
    assert "| a | 52.5 ± 3.5 | +17.5 ± 3.5 |" in table and "reference suffix" in table
    assert "first 10 pairs" in section(rows, 10) and section([], 10) == ""
    assert not csv_rows([SimpleNamespace(label="a")], results, 0)  # not asked: none shown
    empty = [dict(r, n=0) for r in rows]
    assert "no output is long enough" in markdown(empty)
