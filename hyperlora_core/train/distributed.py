"""torchrun set-up and the two ways to spread the hypernetwork: DDP (replicated) or FSDP2 (sharded).

Only the hypernetwork is wrapped. The frozen UNet and encoders are plain replicas on every rank.
The same code runs on gloo (CPU) and NCCL (GPUs); one process skips all of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import HyperLoRAError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def init_distributed(device: torch.device | None = None) -> DistInfo:
    """Join the process group torchrun describes in the environment.

    A plain one-process run skips all of it; a one-process torchrun joins a group of one, so its
    DDP / FSDP2 setting is honoured (and measurable) exactly as on more GPUs.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    if (world > 1 or launched_by_torchrun()) and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    return DistInfo(rank=rank, world=world, local_rank=local, device=device)


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if not info.active:
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank if it is true on any (to fail together instead of hanging)."""
    if not info.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def shutdown(info: DistInfo) -> None:  # noqa: ARG001 - one process may hold a group of one too
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(step_module: nn.Module, mode: str, info: DistInfo) -> nn.Module:
    """DDP or FSDP2 around the `HyperStep` root; the module itself without a process group."""
    if not (info.active or (dist.is_available() and dist.is_initialized())):
        return step_module
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(
            step_module, device_ids=[info.device.index] if info.device.type == "cuda" else None, gradient_as_bucket_view=True
        )
    if mode == "fsdp2":
        return _fully_shard(step_module, info)
    raise HyperLoRAError(f"unknown train.distributed '{mode}'; use ddp or fsdp2.")


def _fully_shard(step_module: nn.Module, info: DistInfo) -> nn.Module:
    """Shard each resampler block, each resampler, the projector and each basis, then the root.

    FSDP2 cannot wrap a bare ModuleList and only unshards on `forward`, so the basis's `mix`
    is registered as a forward method and the root is the `HyperStep` module.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    mesh = init_device_mesh(info.device.type, (info.world,))
    hl = step_module.hl
    for rs in (hl.resampler, hl.base_resampler):
        if rs is None:
            continue
        for block in rs.layers:
            fully_shard(block, mesh=mesh)
        fully_shard(rs, mesh=mesh)
    if hl.id_projector is not None:
        fully_shard(hl.id_projector, mesh=mesh)
    for basis in (hl.id_basis, hl.base_basis):
        if basis is not None:
            fully_shard(basis, mesh=mesh)
            register_fsdp_forward_method(basis, "mix")
    fully_shard(step_module, mesh=mesh)
    return step_module
