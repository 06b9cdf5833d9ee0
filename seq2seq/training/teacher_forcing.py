"""Teacher-forcing schedules (scheduled sampling), as pure functions of the training step.

Bengio, Vinyals, Jaitly and Shazeer (2015), "Scheduled Sampling for Sequence Prediction with
Recurrent Neural Networks", section 2.4: at step (or epoch) ``i`` the decoder is fed the gold
previous token with probability ``eps_i`` and its own prediction otherwise. The paper decays
``eps_i`` from 1 (full teacher forcing) towards a floor. The decoder only ever sees the float;
the training loop calls :func:`ratio_for` (config and the point of the run in, float out), and
so does the teacher-forcing comparison to report what each schedule did.
"""

import math
from typing import Optional

from seq2seq.errors import ConfigError


def constant(i: int, ratio: float) -> float:
    """``eps_i = ratio`` for every ``i``."""
    return ratio


def linear(i: int, k: float, c: float, eps_min: float) -> float:
    """Linear decay: ``eps_i = max(eps_min, k - c * i)``."""
    return max(eps_min, k - c * i)


def exponential(i: int, k: float, eps_min: float) -> float:
    """Exponential decay: ``eps_i = k ** i`` with ``k < 1``, floored at ``eps_min``."""
    return max(eps_min, k ** i)


def inverse_sigmoid(i: float, k: float, c: float = 1.0) -> float:
    """Inverse-sigmoid decay: ``eps_i = k / (k + exp(c * i / k))`` with ``k >= 1``; ``c = 1`` is
    the paper's form, a larger ``c`` runs the same curve faster (for short budgets)."""
    x = c * i / k
    return 0.0 if x > 700 else k / (k + math.exp(x))


#: the default inverse-sigmoid k is at least this: the schedule starts at k / (k + 1) = 0.95
INVERSE_SIGMOID_MIN_K = 19.0


def _solve_k(total: float) -> float:
    """The ``k >= 1`` with ``2 k ln k = total`` (where ``k / (k + exp(total / 2 / k)) = 1/2``),
    by bisection: ``2 k ln k`` grows monotonically from 0 at ``k = 1``."""
    lo, hi = 1.0, max(2.0, float(total))
    for _ in range(200):
        mid = (lo + hi) / 2
        if 2 * mid * math.log(mid) < total:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def default_params(schedule: str, total: int, eps_min: float = 0.0) -> dict:
    """Parameters that take a schedule from about 1 to near its floor over ``total`` units.

    The units are counted from 0, so the last one is ``i = total - 1`` (the loop's step before
    its last update, or the last epoch). Used when the config leaves ``k``/``c`` unset: linear
    reaches ``eps_min`` at the last unit; exponential reaches 0.05 (or ``eps_min``) there;
    inverse sigmoid starts at 0.95 or above, crosses
    0.5 at mid-budget and ends at 0.05 or below, for every budget: ``k`` solves
    ``2 k ln k = total`` with ``c = 1`` where that ``k`` is at least 19 (budgets of 112 units and
    more); shorter budgets keep ``k = 19`` and run the curve faster (``c = 2 k ln k / total``).
    """
    total = max(1, total)
    last = max(1, total - 1)  # the index of the last unit
    if schedule == "linear":
        return {"k": 1.0, "c": (1.0 - eps_min) / last}
    if schedule == "exponential":
        return {"k": max(0.05, eps_min, 1e-6) ** (1.0 / last)}
    if schedule == "inverse_sigmoid":
        k = INVERSE_SIGMOID_MIN_K
        if total <= 2 * k * math.log(k):
            return {"k": k, "c": 2 * k * math.log(k) / total}
        return {"k": _solve_k(total), "c": 1.0}
    return {}


def check_schedule(cfg) -> None:
    """Raise a :class:`ConfigError` naming the key when a schedule's parameters are invalid."""
    def bad(msg):
        raise ConfigError(f"teacher_forcing.{msg}")

    if not 0.0 <= cfg.ratio <= 1.0:
        bad(f"ratio must be in [0, 1], got {cfg.ratio}")
    if not 0.0 <= cfg.min <= 1.0:
        bad(f"min must be in [0, 1], got {cfg.min}")
    if cfg.schedule == "linear" and cfg.c is not None and cfg.c < 0:
        bad(f"c must be >= 0 for the linear schedule, got {cfg.c}")
    if cfg.schedule == "exponential" and cfg.k is not None and not 0.0 < cfg.k < 1.0:
        bad(f"k must be in (0, 1) for the exponential schedule (eps = k**i), got {cfg.k}")
    if cfg.schedule == "inverse_sigmoid" and cfg.k is not None and cfg.k < 1.0:
        bad(f"k must be >= 1 for the inverse_sigmoid schedule, got {cfg.k}")
    if cfg.temperature < 0:
        bad(f"temperature must be >= 0 (0: the argmax), got {cfg.temperature}")
    if cfg.schedule == "inverse_sigmoid" and cfg.c is not None and cfg.c <= 0:
        bad(f"c must be > 0 for the inverse_sigmoid schedule (its speed), got {cfg.c}")
    if cfg.passes not in (1, 2):
        bad(f"passes must be 1 (the stepping decoder) or 2 (two-pass sampling), got {cfg.passes}")
    if cfg.passes == 2 and cfg.feed != "argmax":
        bad(f"feed is what the stepping decoder (passes 1) feeds; with passes 2, mix decides: "
            f"set teacher_forcing.mix instead of feed {cfg.feed}")
    if cfg.passes == 1 and cfg.mix != "argmax":
        bad(f"mix is what two-pass sampling (passes 2) feeds; with passes 1, feed decides: "
            f"set teacher_forcing.feed instead of mix {cfg.mix}")
    if cfg.mix_gradient and (cfg.passes != 2 or cfg.mix != "soft"):
        bad(f"mix_gradient needs passes 2 and mix soft (a chosen token has no gradient), got "
            f"passes {cfg.passes}, mix {cfg.mix}")
    if cfg.oracle == "sentence" and (cfg.feed != "argmax" or cfg.passes != 1):
        bad(f"oracle sentence feeds the oracle where the coin says not gold: it needs feed "
            f"argmax and passes 1 (the defaults), got feed {cfg.feed}, passes {cfg.passes}")


def check_passes(tf, model) -> None:
    """The rule across sections: two-pass sampling (``tf.passes`` 2) needs a decoder without
    input feeding (``model.input_feeding`` false), whose teacher-forced pass is one call."""
    if tf.passes == 2 and model.input_feeding:
        raise ConfigError("teacher_forcing.passes 2 (two-pass sampling) needs a decoder without "
                          "input feeding: set model.input_feeding false or passes 1")


def check_oracle(tf, oracle, train) -> None:
    """The ``oracle`` section's values, and the rule across sections: the sentence-level oracle
    (``tf.oracle`` sentence) feeds the token loss, so ``train.objective`` must be mle."""
    if oracle.beam < 1:
        raise ConfigError(f"oracle.beam must be >= 1, got {oracle.beam}")
    if oracle.noise < 0:
        raise ConfigError(f"oracle.noise must be >= 0 (0: no noise), got {oracle.noise}")
    if tf.oracle == "sentence" and train.objective != "mle":
        raise ConfigError(f"teacher_forcing.oracle sentence feeds the token loss of "
                          f"train.objective mle, got train.objective {train.objective}")


def params(cfg, total: Optional[int] = None) -> dict:
    """The parameters a schedule runs with: the config's ``k``/``c``, the rest from
    :func:`default_params` for a budget of ``total`` units. An inverse sigmoid given ``k``
    alone runs at the paper's speed (``c = 1``)."""
    if cfg.schedule == "constant":
        return {"ratio": cfg.ratio}
    out = default_params(cfg.schedule, total or 1000, cfg.min)
    if cfg.k is not None:
        out["k"] = cfg.k
        if cfg.schedule == "inverse_sigmoid":
            out["c"] = 1.0
    if cfg.c is not None:
        out["c"] = cfg.c
    return out


def ratio_at(cfg, i: float, total: Optional[int] = None) -> float:
    """The teacher-forcing ratio at step/epoch ``i`` for a ``TeacherForcingConfig``.

    ``total`` (the budget in the config's unit) fills in parameters left unset.
    """
    p = params(cfg, total)
    if cfg.schedule == "constant":
        return constant(i, p["ratio"])
    if cfg.schedule == "linear":
        return linear(i, p["k"], p["c"], cfg.min)
    if cfg.schedule == "exponential":
        return exponential(i, p["k"], cfg.min)
    return max(cfg.min, inverse_sigmoid(i, p["k"], p["c"]))


def ratio_for(cfg, step: int, epoch: int, total_steps: int, epochs: int) -> float:
    """The ratio at update ``step`` (in epoch ``epoch``) of a run of ``total_steps`` updates
    and at most ``epochs`` epochs: ``i`` is the step or the epoch by ``cfg.unit``, and the
    budget in that unit fills in unset ``k``/``c``."""
    if cfg.unit == "step":
        return ratio_at(cfg, step, total_steps)
    return ratio_at(cfg, epoch, epochs)
