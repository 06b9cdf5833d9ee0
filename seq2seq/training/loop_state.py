"""What the training loop carries from step to step (saved in every checkpoint), and why it
stops."""

import enum
import math
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

NO_SCORE = (-1.0, -1.0, -math.inf)  # (BLEU, chrF, -loss) before any validation


class StopReason(enum.Enum):
    BUDGET = "budget"  # train.max_steps or train.epochs spent
    TIME = "time budget"  # train.max_minutes spent
    EARLY_STOPPING = "early stopping"  # train.patience validations without a gain
    SIGNAL = "signal"  # Ctrl-C or SIGTERM: checkpoint saved, continue with --resume


@dataclass
class LoopState:
    """What the loop carries from step to step, saved in every checkpoint."""

    step: int = 0  # updates made
    epoch: int = 0  # epochs finished
    batch: int = 0  # batches of the current epoch done
    train_seconds: float = 0.0  # time spent in training steps
    wall_seconds: float = 0.0  # wall-clock time of the run's invocations (data, validation too)
    best_key: List[float] = field(default_factory=lambda: list(NO_SCORE))  # best validation so far
    sched_best: List[float] = field(default_factory=lambda: list(NO_SCORE))  # scheduled ones
    bad_evals: int = 0  # scheduled validations since sched_best last improved
    plateau_factor: float = 1.0  # learning-rate factor of the plateau schedule
    tf_ratio: Optional[float] = None  # the teacher-forcing ratio of the last step
    # since the last validation, summed over target tokens (all processes):
    window_nll: float = 0.0  # plain cross-entropy
    window_objective: float = 0.0  # what was minimized (with label smoothing)
    window_risk: float = 0.0  # train.objective mrt: batches' mean expected cost times their tokens
    window_tokens: int = 0
    window_seconds: float = 0.0

    def update(self, d: Dict[str, Any]) -> None:
        """Take the values of a saved state (keys this version does not know are ignored)."""
        for f in fields(self):
            if f.name in d:
                setattr(self, f.name, d[f.name])

    def stopped(self, t) -> Optional[StopReason]:
        """Why a run in this state must not take another step, if so (for a resumed run that
        had stopped early or on time); ``t``: the ``train`` config."""
        if t.patience and self.bad_evals >= t.patience:
            return StopReason.EARLY_STOPPING
        if t.max_minutes and self.train_seconds >= 60 * t.max_minutes:
            return StopReason.TIME
        return None

    def clear_window(self) -> None:
        self.window_nll = self.window_objective = self.window_risk = self.window_seconds = 0.0
        self.window_tokens = 0
