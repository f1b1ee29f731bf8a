"""Several processes on one folder: which device each takes, joining the launcher's group, and gathering what
each did. Only ``dip batch`` under torchrun (or another launcher setting RANK and WORLD_SIZE) comes here."""

from __future__ import annotations

from pathlib import Path

from .batch import Shard, merge_manifests
from .errors import UsageError


def device_for(device: str, shard: Shard) -> str:
    """Under a launcher, ``auto`` means this process's own GPU (LOCAL_RANK), not everyone's first one."""
    if device != "auto" or shard.world == 1:
        return device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{shard.local_rank % torch.cuda.device_count()}"
    return device


def join_process_group(shard: Shard):
    """Joins the launcher's group (gloo: it only serves the final gather, on CPU or GPU machines alike)."""
    if shard.world == 1:
        return None
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_initialized():
        try:
            # Processes finish their shares at different times; the barrier must outwait the slowest one.
            dist.init_process_group("gloo", timeout=timedelta(days=7))
        except ValueError as error:
            raise UsageError(f"RANK/WORLD_SIZE are set but no launcher is: start with torchrun ({error})") from None
    return dist


def gather_records(group, shard: Shard, records: list[dict], output_dir: Path) -> list[dict]:
    """Every process's records, on every process; rank 0 merges the manifest parts first."""
    if group is None:
        return records
    everyone: list[list[dict]] = [[] for _ in range(shard.world)]
    group.all_gather_object(everyone, records)
    if shard.rank == 0:
        merge_manifests(output_dir)
    group.barrier()
    group.destroy_process_group()
    return [record for share in everyone for record in share]


def agreed(group, value):
    """Rank 0's ``value`` on every process: a decision (an image's layout, from free memory that differs between
    processes) that all must share."""
    if group is None:
        return value
    box = [value]
    group.broadcast_object_list(box, src=0)
    return box[0]


def gathering(group, shard: Shard):
    """A ``gather`` for dip.pipeline.solve_split: each process's fitted boxes, all of them on rank 0 (None on the
    others). Being collective, it is also the barrier after which rank 0 blends."""
    if group is None:
        return None

    def gather(fitted: dict) -> dict | None:
        everyone = [None] * shard.world if shard.rank == 0 else None
        group.gather_object(fitted, everyone, dst=0)
        if shard.rank != 0:
            return None
        return {index: value for share in everyone for index, value in share.items()}

    return gather
