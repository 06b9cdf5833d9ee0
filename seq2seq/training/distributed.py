"""Data-parallel training with PyTorch's own engine (``torchrun`` + DistributedDataParallel).

    torchrun --nproc_per_node=2 -m seq2seq train --config x.yaml --out runs/x      # one machine
    torchrun --nnodes=2 --node_rank=R --master_addr=HOST --nproc_per_node=G -m seq2seq train ...

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without them everything here is a
no-op and training runs in one process. Each global batch (``batch_size * world`` sentences,
length-bucketed and shuffled with the seed exactly as in one process) is split into one
contiguous shard per rank, so N processes with batch B see the same data per step as one
process with batch N*B, and the loss is normalized by the global number of target tokens so
the averaged gradients are the same too. A global batch with fewer sentences than processes
(an epoch's tail, a long sentence alone under ``batch_tokens``) is not dropped: the ranks
without a sentence of their own get a *ghost* shard (one borrowed sentence whose targets are
all masked), so they join the step with zero loss and zero gradient. Each rank draws its own
random numbers (dropout, teacher-forcing coins) from a seed derived from ``train.seed`` and its
rank, and every rank's generator state is saved in the checkpoint and restored to that rank.
Rank 0 alone validates, writes checkpoints, metrics and progress bars; the loop's state is
broadcast from it after every validation.
"""

import gc
import os
from typing import Any, List, NamedTuple, Sequence, Tuple

import torch
import torch.distributed as dist


class Dist(NamedTuple):
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> Tuple[Dist, torch.device]:
    """Join the process group that torchrun describes (gloo on CPU, nccl on CUDA); returns it
    and the device this process runs on (on CUDA, GPU ``LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():  # CPU tensors (the loop's small reductions) go through gloo
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank), device


def wrap(objective: torch.nn.Module, device: torch.device, d: Dist) -> torch.nn.Module:
    """The training objective (:class:`seq2seq.training.objective.Objective`, which holds the
    model) as the training step calls it: in DistributedDataParallel (the model's gradients
    averaged across ranks) when there are several processes, else itself."""
    if d.world == 1:
        return objective
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        objective, device_ids=[device.index] if device.type == "cuda" else None)


def cleanup(d: Dist) -> None:
    """Leave the process group together: a rank that tears its group down while another is
    still working (rank 0 drawing the curves) can abort in gloo's threads."""
    if d.world > 1 and dist.is_initialized():
        gc.collect()  # objects that hold work of the group (a dropped DDP wrapper) go first
        dist.barrier()
        dist.destroy_process_group()


class Shard(NamedTuple):
    """This rank's part of one global batch."""

    rows: List[int]  # indices of its sentences in the data
    ghost: bool = False  # no sentence of its own: rows holds one borrowed, to be masked


def shard(global_batches: Sequence[List[int]], d: Dist) -> List[Shard]:
    """This rank's contiguous part of every global batch: the parts differ by at most one
    sentence and together are the batch, every sentence in exactly one; a rank left without a
    sentence (a batch smaller than the world) gets a ghost shard of the batch's first one."""
    out = []
    for b in global_batches:
        rows = b[len(b) * d.rank // d.world:len(b) * (d.rank + 1) // d.world]
        out.append(Shard(rows) if rows else Shard(b[:1], ghost=True))
    return out


def rank_seed(seed: int, d: Dist) -> int:
    """The seed of rank ``d.rank``'s random numbers: ``seed`` itself on rank 0 (so one process
    draws what it always drew), a different one, derived from both, on every other rank."""
    return seed if d.rank == 0 else (seed * 1_000_003 + d.rank * 7_919) % (2 ** 63 - 1)


def gather(obj: Any, d: Dist) -> List[Any]:
    """Every rank's ``obj``, in rank order, on rank 0 (other ranks get an empty list)."""
    if d.world == 1:
        return [obj]
    box = [None] * d.world if d.main else None
    dist.gather_object(obj, box, dst=0)
    return box or []


def all_sum(x: float, d: Dist) -> float:
    if d.world == 1:
        return x
    t = torch.tensor([float(x)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t)


def any_true(flag: bool, d: Dist) -> bool:
    return all_sum(1.0 if flag else 0.0, d) > 0


def on_main(fn, d: Dist):
    """``fn()`` on rank 0, its result on every rank; a UserError it raises is raised on all
    ranks (so that none is left waiting in a collective)."""
    from seq2seq.errors import UserError

    value, error = None, None
    if d.main:
        try:
            value = fn()
        except UserError as e:
            error = str(e)
    value, error = broadcast((value, error), d)
    if error is not None:
        raise UserError(error)
    return value


def broadcast(obj: Any, d: Dist) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if d.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
