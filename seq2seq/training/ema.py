"""An exponential moving average of the weights (``train.ema_decay``, Polyak averaging).

    ema = WeightAverage(model, decay=0.999)
    ema.update(step)                    # after every optimizer step
    with ema.applied():                 # the model holds the average meanwhile
        validate(model, ...)

The average is what a run validates, keeps as ``best.pt`` and translates with (a checkpoint's
``model``); the weights the optimizer trains travel beside it (``train_weights``) so that
``--resume`` continues exactly. OpenNMT-py, Marian, Nematus and fairseq offer the same.

At update ``t`` (0 for the first) the average moves by ``1 - d`` towards the weights, with
``d = min(decay, (1 + t) / (10 + t))``, the warm-up of ``tf.train.ExponentialMovingAverage``
with ``num_updates``: early updates forget the random initialization quickly, and a decay of
0.999 averages over about the last 1,000 steps once ``t`` passes 9,000.
"""

from contextlib import contextmanager
from typing import Any, Dict, Iterator

import torch
from torch import nn


class WeightAverage:
    """The moving average of ``model``'s floating-point parameters (tied ones count once)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.model, self.decay = model, decay
        self.params = [p for p in model.parameters() if p.is_floating_point()]
        self.shadow = [p.detach().clone() for p in self.params]

    def decay_at(self, t: int) -> float:
        return min(self.decay, (1.0 + t) / (10.0 + t))

    @torch.no_grad()
    def update(self, t: int) -> None:
        """Move the average towards the current weights (``t``: updates before this one)."""
        w = 1.0 - self.decay_at(t)
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach().to(s.dtype), w)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the average inside the block, its own weights again after it."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    def _swap(self) -> None:
        for s, p in zip(self.shadow, self.params):
            p.data, s.data = s.data, p.data

    def state_dict(self) -> Dict[str, Any]:
        """The model's state dict with the average in place of the weights."""
        index = {id(p): s for p, s in zip(self.params, self.shadow)}
        return {k: index[id(v)] if id(v) in index else v.detach()
                for k, v in self.model.state_dict(keep_vars=True).items()}

    @torch.no_grad()
    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Take the average from a state dict written by :meth:`state_dict`."""
        index = {id(p): s for p, s in zip(self.params, self.shadow)}
        for k, v in self.model.state_dict(keep_vars=True).items():
            if id(v) in index:
                index[id(v)].copy_(state[k])
