"""torchrun / DistributedDataParallel support: the same code runs on one process or many."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def is_main_process() -> bool:
    """Rank 0 of a torchrun launch, or a plain single process."""
    return int(os.environ.get("RANK", "0")) == 0


def setup() -> Context:
    """Join the process group that torchrun describes in the environment (gloo on CPU, nccl on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(rank, world_size, local_rank, device)


def teardown(context: Context) -> None:
    """Leave the process group. A finished run calls `barrier` first, so that no rank exits while
    rank 0 is still evaluating (gloo aborts a process that leaves with peers still connected)."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()


def gather_rows(tensor: torch.Tensor, total: int, context: Context) -> torch.Tensor:
    """Rows that rank r computed for indices r, r + W, r + 2W, ... reassembled in index order."""
    if not context.distributed:
        return tensor
    per_rank = (total + context.world_size - 1) // context.world_size
    padded = tensor.new_zeros((per_rank, *tensor.shape[1:]))
    padded[: len(tensor)] = tensor
    gathered = [torch.empty_like(padded) for _ in range(context.world_size)]
    dist.all_gather(gathered, padded.contiguous())
    interleaved = torch.stack(gathered, dim=1).reshape(per_rank * context.world_size, *tensor.shape[1:])
    return interleaved[:total]


def broadcast_buffers(model: torch.nn.Module, context: Context) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics drift apart per rank, since DDP
    syncs them only at the start of each forward), so all ranks evaluate the model rank 0 saves."""
    if not context.distributed:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def broadcast_flag(value: bool, context: Context) -> bool:
    """True on every rank if it is true on any rank (used to stop all ranks together)."""
    if not context.distributed:
        return value
    flag = torch.tensor([1.0 if value else 0.0], device=context.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


def average_gradients(parameters: Iterable[torch.nn.Parameter], context: Context) -> None:
    """Average gradients of parameters that DDP does not wrap (a loss's learnable centres, say)."""
    if not context.distributed:
        return
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= context.world_size
