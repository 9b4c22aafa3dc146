"""Data-parallel plumbing: the same script runs alone (``python train.py``) or under
``torchrun --nproc_per_node=K train.py``; torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) is what switches distributed training on.

Batches: the global batch of a step is a pure function of ``(seed, step)``
(:func:`global_batch_indices`); rank r trains on its r-th slice. Backend: NCCL on CUDA, gloo on CPU. Rank 0 is the only writer (checkpoints, logs); the other
ranks wait on a :func:`barrier`.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


class DistInfo(NamedTuple):
    """rank / world_size / local_rank of this process; ``enabled`` when a process group is up."""

    rank: int
    world_size: int
    local_rank: int
    enabled: bool


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


DEVICES = "auto | cpu | cuda | cuda:N"


def check_device(device: str) -> str:
    """``device`` if it names a device this library runs on (:data:`DEVICES`), else a ValueError.
    Only the name is checked: whether that GPU exists is :func:`resolve_device`'s business, so a
    config naming ``cuda:1`` can be written (and tested) on a machine without one."""
    kind, _, index = str(device).partition(":")
    if not (device in {"auto", "cpu", "cuda"} or (kind == "cuda" and index.isdigit())):
        raise ValueError(f"unknown device {device!r}, expected one of {DEVICES} (N a GPU index such as 0)")
    return device


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch.device to run on; a torch.device is returned as is.

    ``"auto"`` takes CUDA when available, else the CPU; ``"cuda"`` is ``cuda:LOCAL_RANK`` (so each
    torchrun rank takes its own GPU; GPU 0 outside torchrun); ``"cuda:N"`` is GPU N. Asking for a
    GPU this machine lacks is a ValueError saying which GPUs there are."""
    if isinstance(device, torch.device):
        return device
    device = check_device(device)
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    index = int(device.partition(":")[2] or os.environ.get("LOCAL_RANK", "0"))
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        found, fix = (f"GPUs 0..{count - 1}", f"a GPU index below {count} or --device cpu") if count else \
            ("no GPU (torch.cuda.is_available() is False)", "--device cpu")
        raise ValueError(f"device {device!r} asks for GPU {index}, but this machine has {found}; pass {fix}")
    return torch.device("cuda", index)


def setup_distributed(device: torch.device) -> DistInfo:
    """Initialise the process group when launched by torchrun (idempotent); a no-op otherwise."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), True)
    if not launched_by_torchrun():
        return DistInfo(0, 1, 0, False)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, True)


def cleanup_distributed() -> None:
    """Destroy the process group (call once at the end of a training script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ranks (returns a new tensor; identity without a process group)."""
    if get_world_size() == 1:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / get_world_size()


def shard_size(global_batch: int, world_size: int) -> int:
    """Per-rank batch; the global batch must split evenly so every rank sees the same shape."""
    if global_batch % world_size:
        raise ValueError(
            f"global batch_size={global_batch} is not divisible by world size {world_size}; "
            f"expected a multiple of {world_size} (e.g. {world_size * max(1, global_batch // world_size)})"
        )
    return global_batch // world_size


def derive_seed(seed: int, *keys) -> int:
    """A 63-bit seed from ``(seed, *keys)``; hashing keeps streams for different keys unrelated."""
    blob = ":".join(str(k) for k in (seed, *keys)).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") >> 1


def global_batch_indices(step: int, *, seed: int, batch_size: int, num_examples: int) -> torch.Tensor:
    """(batch_size,) long: positions ``[step*B, (step+1)*B)`` of the endless stream made of one
    fresh permutation of the examples per epoch, permutation e seeded by ``(seed, e)``."""
    positions = torch.arange(step * batch_size, (step + 1) * batch_size)
    epochs = positions // num_examples
    index = torch.empty_like(positions)
    for epoch in epochs.unique().tolist():
        perm = _epoch_permutation(seed, epoch, num_examples)
        here = epochs == epoch
        index[here] = perm[positions[here] % num_examples]
    return index


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, num_examples: int) -> torch.Tensor:
    # cached: consecutive steps share an epoch, and randperm of a large dataset is not free
    return torch.randperm(num_examples, generator=torch.Generator().manual_seed(derive_seed(seed, "epoch", epoch)))


def wrap_ddp(module: nn.Module, device: torch.device, *, find_unused_parameters: bool = False) -> nn.Module:
    """DistributedDataParallel around ``module`` when a process group is up, else ``module``.
    DDP broadcasts rank 0's weights at construction, so every rank starts identical."""
    if get_world_size() == 1:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module
