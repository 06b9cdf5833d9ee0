"""The random number generators training draws from (torch, Python, CUDA): seeded at the start
of a run, saved in every checkpoint, restored by ``train --resume`` so that a resumed run draws
what the uninterrupted one would have."""

import random
from typing import Any, Dict

import torch


def seed_all(seed: int) -> None:
    """Seed the random number generators that training draws from (torch, Python)."""
    torch.manual_seed(seed)
    random.seed(seed)


def rng_state() -> Dict[str, Any]:
    """The random number generators' states (torch, Python, CUDA), for a checkpoint."""
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(s, rank: int = 0) -> None:
    """Restore what :func:`rng_state` saved: ``s`` is one state, or one per process of a
    distributed run in rank order (this process takes its own; a rank the run did not have
    keeps the generator it was seeded with)."""
    if isinstance(s, list):
        if rank >= len(s):
            return
        s = s[rank]
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
