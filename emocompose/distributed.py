"""Data-parallel training under torchrun: the process's place in the job, and how loss terms
are summed over ranks so that two ranks compute exactly the gradient of one process."""

from __future__ import annotations

import os


def dist_env() -> tuple[int, int, int]:
    """rank, local rank, world size from torchrun's environment (1 process without it)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"])
    return 0, 0, 1


def start(world: int) -> None:
    if world > 1:
        import torch
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def finish(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def make_reduction(world: int):
    from emocompose.model.gmvae import Reduction

    if world == 1:
        return Reduction()
    import torch.distributed as dist

    class DistReduction(Reduction):
        def count(self, n):
            n = n.detach().clone().float()
            dist.all_reduce(n)
            return n

        def others_sum(self, x):
            y = x.detach().clone()
            dist.all_reduce(y)
            return y - x.detach()

    r = DistReduction()
    r.world = world
    return r


def sum_over_ranks(vals: dict, exclude=()) -> dict:
    import torch
    import torch.distributed as dist

    keys = sorted(k for k in vals if k not in exclude)
    t = torch.tensor([vals[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {**vals, **dict(zip(keys, t.tolist()))}
