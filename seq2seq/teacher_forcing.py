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

from .errors import ConfigError


def constant(i: int, ratio: float) -> float:
    """``eps_i = ratio`` for every ``i``."""
    return ratio


def linear(i: int, k: float, c: float, eps_min: float) -> float:
    """Linear decay: ``eps_i = max(eps_min, k - c * i)``."""
    return max(eps_min, k - c * i)


def exponential(i: int, k: float, eps_min: float) -> float:
    """Exponential decay: ``eps_i = k ** i`` with ``k < 1``, floored at ``eps_min``."""
    return max(eps_min, k ** i)


def inverse_sigmoid(i: int, k: float) -> float:
    """Inverse-sigmoid decay: ``eps_i = k / (k + exp(i / k))`` with ``k >= 1``."""
    x = i / k
    return 0.0 if x > 700 else k / (k + math.exp(x))


def default_params(schedule: str, total: int, eps_min: float = 0.0) -> dict:
    """Parameters that take a schedule from about 1 to near its floor over ``total`` units.

    Used when the config leaves ``k``/``c`` unset: linear reaches ``eps_min`` at the end;
    exponential reaches 0.05 (or ``eps_min``); inverse sigmoid crosses 0.5 at mid-budget.
    """
    total = max(1, total)
    if schedule == "linear":
        return {"k": 1.0, "c": (1.0 - eps_min) / total}
    if schedule == "exponential":
        return {"k": max(0.05, eps_min, 1e-6) ** (1.0 / total)}
    if schedule == "inverse_sigmoid":
        # k / (k + exp(total/2/k)) = 0.5  <=>  exp(total/(2k)) = k: solve by fixed-point iteration
        k = max(1.0, total / 20)
        for _ in range(100):
            k = max(1.0, total / (2 * math.log(max(k, 1.0 + 1e-9))))
        return {"k": k}
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


def ratio_at(cfg, i: int, total: Optional[int] = None) -> float:
    """The teacher-forcing ratio at step/epoch ``i`` for a ``TeacherForcingConfig``.

    ``total`` (the budget in the config's unit) fills in parameters left unset.
    """
    if cfg.schedule == "constant":
        return constant(i, cfg.ratio)
    params = default_params(cfg.schedule, total or 1000, cfg.min)
    if cfg.k is not None:
        params["k"] = cfg.k
    if cfg.c is not None:
        params["c"] = cfg.c
    if cfg.schedule == "linear":
        return linear(i, params["k"], params["c"], cfg.min)
    if cfg.schedule == "exponential":
        return exponential(i, params["k"], cfg.min)
    return max(cfg.min, inverse_sigmoid(i, params["k"]))


def ratio_for(cfg, step: int, epoch: int, total_steps: int, epochs: int) -> float:
    """The ratio at update ``step`` (in epoch ``epoch``) of a run of ``total_steps`` updates
    and at most ``epochs`` epochs: ``i`` is the step or the epoch by ``cfg.unit``, and the
    budget in that unit fills in unset ``k``/``c``."""
    if cfg.unit == "step":
        return ratio_at(cfg, step, total_steps)
    return ratio_at(cfg, epoch, epochs)
