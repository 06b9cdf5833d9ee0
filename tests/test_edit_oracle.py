"""The minimal-edit oracle (seq2seq.compare.edit_oracle) against a brute force, and its use in
the ExAccErr curves (seq2seq.compare.oracle) and the error injection (seq2seq.compare.injection)
with stand-in models whose outputs are known."""

import math
import random
from types import SimpleNamespace

import pytest
import torch

from seq2seq.compare import edit_oracle
from seq2seq.compare.injection import inject, probe
from seq2seq.compare.oracle import FREE_MARGIN, accumulation, oracle_losses
from seq2seq.data.batching import IdPairs
from seq2seq.data.tokenizer import EOS, PAD

V = 16
WRONG = V - 1  # a token no reference holds


def levenshtein(a, b) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def brute_set(prefix, ref):
    """``{r[j] : j in argmin_j D(prefix, r[:j])}``, ``r[len r]`` = EOS, from the definition."""
    d = [levenshtein(prefix, ref[:j]) for j in range(len(ref) + 1)]
    return {(ref + [EOS])[j] for j in range(len(d)) if d[j] == min(d)}


def sets_after(prefixes, refs):
    """The batched oracle's sets after each prefix, as Python sets."""
    N = max(map(len, refs)) + 1
    R = torch.tensor([r + [EOS] + [PAD] * (N - len(r) - 1) for r in refs])  # (B, N)
    n = torch.tensor([len(r) for r in refs])
    row = edit_oracle.start(R, n)
    for l in range(max(map(len, prefixes))):
        y = torch.tensor([p[l] if l < len(p) else PAD for p in prefixes])
        row = torch.where(torch.tensor([l < len(p) for p in prefixes]).unsqueeze(1),
                          edit_oracle.advance(row, R, n, y), row)
    sets = edit_oracle.oracle_sets(row, R, V)
    return [set(torch.nonzero(s).flatten().tolist()) for s in sets], row


def test_the_oracle_after_an_inserted_token_by_hand():
    a, b, c, x = 4, 5, 6, 7  # ref "a b c", own prefix "a x": D = 2, 1, 1, 2 for j = 0..3
    (got,), row = sets_after([[a, x]], [[a, b, c]])
    assert row[0].tolist() == [2, 1, 1, 2]
    assert got == {b, c}  # x substituted for b (next: c), or x inserted (next: b)
    assert sets_after([[a, b]], [[a, b, c]])[0] == [{c}]  # the gold prefix: the next token
    assert sets_after([[a, b, c]], [[a, b, c]])[0] == [{EOS}]
    assert sets_after([[a, b, c, x]], [[a, b, c]])[0] == [{EOS}]  # too long: stop
    assert sets_after([[]], [[]])[0] == [{EOS}]


def test_the_row_and_the_sets_equal_a_brute_force_on_random_cases():
    rng = random.Random(0)
    for _ in range(200):
        refs = [[rng.randint(4, 6) for _ in range(rng.randint(0, 5))] for _ in range(3)]
        prefixes = [[rng.randint(3, 8) for _ in range(rng.randint(0, 7))] for _ in range(3)]
        got, row = sets_after(prefixes, refs)
        for b, (p, r) in enumerate(zip(prefixes, refs)):
            assert got[b] == brute_set(p, r), (p, r)
            assert row[b, :len(r) + 1].tolist() == [levenshtein(p, r[:j])
                                                    for j in range(len(r) + 1)]


def test_the_set_loss_sums_the_probabilities():
    p = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    sets = torch.tensor([[False, True, False, True]])
    assert float(edit_oracle.set_nll(p.log(), sets)) == pytest.approx(-math.log(0.6))


class EditModel:
    """A stand-in model whose reference is its source: after the gold prefix ``r[:l]`` it gives
    ``r[l]`` (EOS at the end) probability 0.9, except at ``err_at``: 0.3, and 0.6 on ``WRONG``,
    its argmax; after ``r[:t] + [WRONG] + r[t:l]`` (that insertion so far) ``r[l]`` 0.9; after
    any other prefix the uniform distribution (argmax: id 0, padding)."""

    def __init__(self, err_at=None):
        self.err_at = err_at

    def eval(self):
        return self

    def __call__(self, src, src_len, tgt_in, ratio):
        B, T = tgt_in.shape
        logits = torch.zeros(B, T, V)
        for b in range(B):
            ref = src[b, :int(src_len[b])].tolist() + [EOS]
            t = self.err_at
            moved = ref if t is None else ref[:t] + [WRONG] + ref[t:]
            prefix = []
            for l in range(T):
                p = torch.full((V,), 1.0 / V)
                if prefix == ref[:l] and l < len(ref):
                    if l == t:
                        p = torch.full((V,), 0.1 / (V - 2))
                        p[ref[l]], p[WRONG] = 0.3, 0.6
                    else:
                        p = torch.full((V,), 0.1 / (V - 1))
                        p[ref[l]] = 0.9
                elif prefix == moved[:l] and l < len(moved):
                    p = torch.full((V,), 0.1 / (V - 1))
                    p[moved[l]] = 0.9
                logits[b, l] = p.log()
                gold = ratio >= 1 and l + 1 < T
                prefix.append(int(tgt_in[b, l + 1]) if gold else int(logits[b, l].argmax()))
        return logits


def distinct_data(lengths, seed=0):
    """Sources of distinct symbols (4 .. V - 2), each its own reference."""
    rng = random.Random(seed)
    src = [rng.sample(range(4, V - 1), n) for n in lengths]
    return IdPairs(src, [list(s) for s in src], [""] * len(src), [""] * len(src))


def test_a_perfect_model_has_zero_excess_error_against_the_edit_oracle():
    data = distinct_data([3, 5, 1, 4, 2])
    x = oracle_losses(EditModel(), data, batch_size=2, device="cpu", edit=True)
    assert x["loss_gold"].size(1) == 5 + 1 + FREE_MARGIN
    assert torch.equal(x["mask_free"], x["mask"])  # its own outputs end where the references do
    assert not bool(x["wrong_free"].any())
    c = accumulation(x["loss_gold"], x["loss_free"], x["mask"], x["wrong_free"],
                     mask_free=x["mask_free"])
    assert c["n"] == c["n_gold"] and c["n"][:6] == [5, 5, 4, 3, 2, 1]
    assert c["exaccerr"] == pytest.approx([0.0] * len(c["n"]), abs=1e-6)
    assert c["exaccerr_lo"] == pytest.approx(c["exaccerr_hi"], abs=1e-6)


def test_an_inserted_token_is_followed_by_the_edit_oracle_sets():
    """Every output inserts WRONG at t and then goes on with the reference: one edit. After it
    the oracle allows ``r[t]`` (WRONG inserted) and ``r[t + 1]`` (substituted), then the
    reference; the output is one longer, and only position t is an error."""
    t, n = 2, 4
    data = distinct_data([n] * 3)
    x = oracle_losses(EditModel(err_at=t), data, batch_size=2, device="cpu", edit=True)
    good, bad, q = -math.log(0.9), -math.log(0.3), 0.1 / (V - 1)
    expect_free = [good] * t + [bad, -math.log(0.9 + q)] + [good] * (n - t)  # EOS at n + 1
    assert x["mask_free"][0].sum() == n + 2 and x["mask"][0].sum() == n + 1
    assert x["loss_free"][0, :n + 2].tolist() == pytest.approx(expect_free, rel=1e-4)
    assert x["wrong_free"][0].tolist()[:n + 2] == [l == t for l in range(n + 2)]
    expect_gold = [bad if l == t else good for l in range(n + 1)]
    assert x["loss_gold"][0, :n + 1].tolist() == pytest.approx(expect_gold, rel=1e-4)
    c = accumulation(x["loss_gold"], x["loss_free"], x["mask"], x["wrong_free"],
                     mask_free=x["mask_free"])
    ex = [sum(expect_free[:l + 1]) - sum(expect_gold[:l + 1]) for l in range(n + 2)]
    assert c["exaccerr"][:n + 2] == pytest.approx(ex, abs=1e-4)
    assert c["err_clean"][t] == 1.0 and c["err_after"][t + 1:n + 2] == [0.0] * (n + 1 - t)


class EditStepModel:
    """A stand-in with the decoder's step interface whose reference is its source. ``mode``:
    ``copier`` gives ``r[l]`` 0.9 at output position ``l`` whatever came before; ``resumer``
    keeps a pointer into ``r`` that moves on when fed the token it points at (an injected
    token counts as inserted) and gives that token 0.9; ``lost`` gives ``r[l]`` 0.9 while the
    prefix is the reference, else the uniform distribution. ``WRONG`` gets 0.05: the second
    choice."""

    def __init__(self, mode):
        self.mode = mode
        self.decoder = SimpleNamespace(out=SimpleNamespace(out_features=V),
                                       start=self.start, step=self.step)

    def eval(self):
        return self

    def encoder(self, src, src_len):
        refs = [src[b, :int(src_len[b])].tolist() + [EOS] for b in range(len(src))]
        T = max(map(len, refs)) + FREE_MARGIN + 2
        return torch.tensor([r + [EOS] * (T - len(r)) for r in refs])  # (B, T)

    def start(self, ref):
        B = ref.size(0)
        return 0, torch.zeros(B, dtype=torch.long), torch.ones(B, dtype=torch.bool)

    def step(self, y, state, ref):
        l, j, ok = state
        if l > 0:  # y: the token fed for output position l - 1
            hit = y == ref.gather(1, j.unsqueeze(1)).squeeze(1)
            ok = ok & (y == ref[:, l - 1])
            j = j + hit.long()
        nxt = {"copier": ref[:, l], "resumer": ref.gather(1, j.unsqueeze(1)).squeeze(1),
               "lost": ref[:, l]}[self.mode]
        p = torch.full((ref.size(0), V), 0.05 / (V - 2))
        p[:, WRONG] = 0.05
        p.scatter_(1, nxt.unsqueeze(1), 0.9)
        if self.mode == "lost":
            p = torch.where(ok.unsqueeze(1), p, torch.full_like(p, 1.0 / V))
        return p.log(), (l + 1, j, ok), None


@pytest.mark.parametrize("k", [1, 2])
def test_recovery_is_scored_as_the_task_allows(k):
    """The resumer goes on where the reference left off: the minimal edit after the injection
    (recovered, against the edit oracle), one position behind the aligned oracle (lost there).
    The copier recovers both ways; the lost model neither."""
    t, data = 1, distinct_data([3, 5, 4, 6, 2])
    n = sum(len(y) + 1 > t + k for y in data.tgt)
    for mode, aligned_acc, edit_acc in (("resumer", 0.0, 100.0), ("copier", 100.0, 100.0),
                                        ("lost", 0.0, 0.0)):
        model = EditStepModel(mode)
        aligned = inject(model, data, t, k, "second", 2, "cpu")
        edit = inject(model, data, t, k, "second", 2, "cpu", edit=True)
        clean = inject(model, data, t, k, "gold", 2, "cpu", edit=True)
        assert aligned["n"] == edit["n"] == clean["n"] == n
        assert clean["acc"] == clean["exact"] == 100.0, mode
        assert clean["loss"] == pytest.approx(-math.log(0.9), rel=1e-5)
        assert aligned["acc"] == aligned["exact"] == aligned_acc, mode
        assert edit["acc"] == edit["exact"] == edit_acc, mode


def test_probe_at_several_positions_names_them():
    data = distinct_data([3, 6, 5, 7])
    res = probe(EditStepModel("copier"), data, 4, "cpu", ks=(1, 2), ts=(1, 3, 10),
                task="commands")
    assert set(res) == {f"{h}_{k}_t{t}" for h in ("gold", "random", "second")
                        for k in (1, 2) for t in (1, 3, 10)}
    assert res["second_1_t3"]["t"] == 3 and res["second_1_t3"]["exact"] == 100.0
    assert res["gold_2_t1"]["n"] == 4 and res["gold_1_t3"]["n"] == 3  # 3 + EOS: too short
    assert res["gold_1_t10"]["n"] == 0  # no output is that long
    from seq2seq.compare.injection import csv_rows
    rows = csv_rows([SimpleNamespace(label="a")], {"a": [{"seed": 1, "injection": {"x": res}}]})
    assert {(r["how"], r["k"], r["t"]) for r in rows} == {
        (h, k, t) for h in ("gold", "random", "second") for k in (1, 2) for t in (1, 3, 10)}
    old = csv_rows([SimpleNamespace(label="a")], {"a": [{"seed": 1, "injection": {
        "x": {"random_4": {"t": 2, "n": 1, "acc": 0.0, "exact": 0.0, "loss": 1.0}}}}]})
    assert (old[0]["how"], old[0]["k"], old[0]["t"]) == ("random", 4, 2)  # an older result
