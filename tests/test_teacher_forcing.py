"""Teacher-forcing schedules: end points, monotonicity, floors, parameter checks."""

import math

import pytest
import torch

from seq2seq import config
from seq2seq.training import teacher_forcing as tf
from seq2seq.config import TeacherForcingConfig
from seq2seq.model.decoder import gold_mask
from seq2seq.errors import UserError

STEPS = range(0, 5001, 50)


def non_increasing(values):
    return all(b <= a for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0])
def test_constant_returns_its_ratio(ratio):
    assert all(tf.constant(i, ratio) == ratio for i in STEPS)
    cfg = TeacherForcingConfig(schedule="constant", ratio=ratio)
    assert all(tf.ratio_at(cfg, i, total=100) == ratio for i in STEPS)


def test_linear():
    values = [tf.linear(i, k=1.0, c=1e-3, eps_min=0.2) for i in STEPS]
    assert values[0] == 1.0 and non_increasing(values)
    assert tf.linear(400, 1.0, 1e-3, 0.2) == pytest.approx(0.6)  # k - c * i
    assert min(values) == 0.2 and values[-1] == 0.2  # the floor, reached and kept


def test_exponential():
    values = [tf.exponential(i, k=0.999, eps_min=0.1) for i in STEPS]
    assert values[0] == 1.0 and non_increasing(values)
    assert tf.exponential(100, 0.99, 0.0) == pytest.approx(0.99 ** 100)
    assert min(values) == 0.1 and values[-1] == 0.1


@pytest.mark.parametrize("k", [1.0, 10.0, 100.0])
def test_inverse_sigmoid(k):
    values = [tf.inverse_sigmoid(i, k) for i in STEPS]
    assert values[0] == pytest.approx(k / (k + 1))  # close to 1 for large k
    assert non_increasing(values) and all(0.0 <= v < 1.0 for v in values)
    assert values[-1] < 0.01
    assert tf.inverse_sigmoid(10 ** 9, k) == 0.0  # no overflow far out


@pytest.mark.parametrize("total", [100, 1000, 20000])
@pytest.mark.parametrize("schedule", ["linear", "exponential", "inverse_sigmoid"])
def test_default_params_go_from_about_one_to_the_floor_over_the_budget(schedule, total):
    for floor in (0.0, 0.2):
        cfg = TeacherForcingConfig(schedule=schedule, min=floor)
        units = [*range(0, total - 1, max(1, total // 100)), total - 1]  # 0 .. the last unit
        values = [tf.ratio_at(cfg, i, total) for i in units]
        assert non_increasing(values) and min(values) >= floor
        if schedule == "inverse_sigmoid":  # symmetric about mid-budget: k/(k+1) to 1/(k+1)
            assert values[0] >= 0.9 and values[-1] <= max(floor, 0.1)
        else:  # linear ends on the floor at the last unit, not one after it; exponential
            end = floor if schedule == "linear" else max(floor, 0.05)  # on 0.05 or the floor
            assert values[0] == 1.0 and values[-1] == pytest.approx(end, abs=1e-9)
            assert tf.ratio_at(cfg, total - 2, total) > end  # not before the last unit
    if schedule == "inverse_sigmoid":  # crosses one half at mid-budget
        assert tf.ratio_at(TeacherForcingConfig(schedule=schedule), total // 2, total) == \
            pytest.approx(0.5, abs=0.02)


def test_explicit_params_override_the_defaults():
    cfg = TeacherForcingConfig(schedule="linear", k=0.8, c=0.01, min=0.1)
    assert tf.ratio_at(cfg, 0, 10 ** 6) == pytest.approx(0.8)
    assert tf.ratio_at(cfg, 30, 10 ** 6) == pytest.approx(0.5)
    assert tf.ratio_at(cfg, 10 ** 4, 10 ** 6) == pytest.approx(0.1)
    cfg = TeacherForcingConfig(schedule="exponential", k=0.5)
    assert tf.ratio_at(cfg, 3, 10 ** 6) == pytest.approx(0.125)


@pytest.mark.parametrize("params,key", [
    (dict(schedule="inverse_sigmoid", k=0.5), "k"),
    (dict(schedule="exponential", k=1.0), "k"),
    (dict(schedule="exponential", k=1.5), "k"),
    (dict(schedule="exponential", k=0.0), "k"),
    (dict(schedule="linear", c=-0.1), "c"),
    (dict(schedule="constant", ratio=1.5), "ratio"),
    (dict(schedule="constant", ratio=-0.1), "ratio"),
    (dict(schedule="linear", min=1.2), "min"),
])
def test_bad_params_are_rejected_naming_the_key(params, key):
    with pytest.raises(UserError, match=rf"teacher_forcing.*\b{key}\b"):
        TeacherForcingConfig(**params)


def test_bad_params_are_rejected_from_the_command_line():
    from seq2seq import config

    with pytest.raises(UserError, match="k"):
        config.load(None, ["teacher_forcing.schedule=inverse_sigmoid", "teacher_forcing.k=0.5"])
    ok = config.load(None, ["teacher_forcing.schedule=inverse_sigmoid", "teacher_forcing.k=2"])
    assert ok.teacher_forcing.k == 2.0


BUDGETS = sorted(set(range(1, 301)) | {int(10 ** (e / 4)) for e in range(8, 25)})  # 1 .. 10^6


@pytest.mark.parametrize("unit", ["step", "epoch"])
def test_inverse_sigmoid_default_starts_near_one_and_crosses_half_way_for_every_budget(unit):
    """For budgets 1..10^6 (every one up to 300, then log-spaced): about 1 at the start, 1/2 at
    mid-budget, near 0 at the end, never rising; epoch units included (short budgets)."""
    cfg = TeacherForcingConfig(schedule="inverse_sigmoid", unit=unit)
    for total in BUDGETS:
        p = tf.params(cfg, total)
        assert p["k"] >= 1 and p["c"] > 0, total
        assert tf.ratio_at(cfg, 0, total) >= 0.95, total
        assert tf.ratio_at(cfg, total / 2, total) == pytest.approx(0.5, abs=1e-6), total
        assert tf.ratio_at(cfg, total, total) <= 0.05 + 1e-9, total
        points = [tf.ratio_at(cfg, i * total / 20, total) for i in range(21)]
        assert non_increasing(points), total


def test_inverse_sigmoid_given_k_alone_is_the_papers_form():
    cfg = TeacherForcingConfig(schedule="inverse_sigmoid", k=5.0)
    for total in (1, 10, 10 ** 5):
        assert tf.ratio_at(cfg, 7, total) == pytest.approx(5 / (5 + math.exp(7 / 5)))
    fast = TeacherForcingConfig(schedule="inverse_sigmoid", k=5.0, c=2.0)
    assert tf.ratio_at(fast, 7, 10) == pytest.approx(5 / (5 + math.exp(14 / 5)))


def test_scope_token_flips_a_coin_per_token_per_example():
    torch.manual_seed(0)
    gold = gold_mask(400, 50, 0.3, "token")
    assert gold.shape == (400, 50)
    assert float(gold.float().mean()) == pytest.approx(0.3, abs=0.01)
    rows = gold.float().mean(1)
    assert 0.05 < float(rows.std()) < 0.15  # rows differ: no example is all gold or all fed


def test_scope_sequence_feeds_each_example_all_gold_or_all_its_own():
    torch.manual_seed(0)
    gold = gold_mask(2000, 30, 0.3, "sequence")
    assert bool((gold.all(1) | ~gold.any(1)).all())  # each row: all gold or none
    assert float(gold[:, 0].float().mean()) == pytest.approx(0.3, abs=0.03)


def test_scope_batch_shares_the_coin_of_a_step():
    torch.manual_seed(0)
    gold = gold_mask(64, 2000, 0.3, "batch")
    assert bool((gold.all(0) | ~gold.any(0)).all())  # each column: the same for every example
    assert float(gold[0].float().mean()) == pytest.approx(0.3, abs=0.03)


@pytest.mark.parametrize("scope", ["token", "sequence", "batch"])
def test_scope_end_points(scope):
    assert bool(gold_mask(8, 5, 1.0, scope).all())
    assert not bool(gold_mask(8, 5, 0.0, scope).any())


def test_sampled_feedback_temperature_limits():
    """feed: sample at temperature 0 is the argmax feed; a very high temperature is uniform."""
    from seq2seq.config import ModelConfig
    from seq2seq.model.seq2seq import Seq2Seq

    cfg = ModelConfig(embedding_dim=8, hidden_size=8, dropout=0.0)
    model = Seq2Seq.from_config(cfg, 30, 30, 0).eval()
    g = torch.Generator().manual_seed(1)
    src, tgt = torch.randint(4, 30, (6, 5), generator=g), torch.randint(4, 30, (6, 7), generator=g)
    lens = torch.full((6,), 5)
    with torch.no_grad():
        argmax = model(src, lens, tgt, 0.0, "argmax")
        torch.manual_seed(3)
        cold = model(src, lens, tgt, 0.0, "sample", temperature=0.0)
        torch.manual_seed(3)
        warm = model(src, lens, tgt, 0.0, "sample", temperature=1.0)
    assert torch.equal(argmax, cold)
    assert not torch.equal(argmax, warm)  # sampling feeds other tokens
    with pytest.raises(UserError, match="temperature must be >= 0"):
        config.load(None, ["teacher_forcing.temperature=-1"])
