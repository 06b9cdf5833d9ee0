"""The optimizer (Adam) and the learning rate as a plain function of the step."""

import math

import torch


def make_optimizer(model, lr: float) -> torch.optim.Optimizer:
    """Adam over the model's parameters; the fused kernel where torch has it (4x faster on
    the CPU, torch >= 2.4)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def learning_rate(t, step: int, total: int, plateau_factor: float) -> float:
    """The learning rate at ``step`` of ``total`` for a ``TrainConfig`` ``t``: linear warm-up
    over ``warmup_steps``, then constant (``constant``, ``plateau``) or cosine decay to 0 at
    ``total`` (``cosine``), times the plateau factor (``plateau``: ``lr_decay`` per stalled
    validation, kept by the training loop)."""
    lr = t.lr * plateau_factor
    if t.warmup_steps and step < t.warmup_steps:
        lr *= (step + 1) / t.warmup_steps
    if t.lr_schedule == "cosine":
        lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total))))
    return lr
