"""Choose the device and compute dtype once per run, with a human-readable reason.

Policy: cuda -> mps -> cpu; on CUDA the forward passes run under bf16 autocast (master weights
and the optimiser stay float32); on CPU and MPS everything is float32. Under torchrun each
process takes the GPU of its LOCAL_RANK.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch

log = logging.getLogger(__name__)


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def choose_device_and_dtype(config) -> tuple[torch.device, torch.dtype, str]:
    """Return (device, autocast dtype, reason) for `config.device` / `config.dtype`.

    Raises ValueError when an explicitly requested device or dtype is not usable here.
    """
    want = config.device
    if want == "auto":
        if torch.cuda.is_available():
            kind, why = "cuda", f"CUDA available ({torch.cuda.get_device_name(0)})"
        elif _mps_available():
            kind, why = "mps", "no CUDA; Apple MPS available"
        else:
            kind, why = "cpu", "no CUDA or MPS device found"
    else:
        kind, why = want, f"device={want} requested"
        if want == "cuda" and not torch.cuda.is_available():
            raise ValueError("device = 'cuda' requested but no CUDA GPU is available: use device=auto or cpu")
        if want == "mps" and not _mps_available():
            raise ValueError("device = 'mps' requested but MPS is not available: use device=auto or cpu")

    device = torch.device(kind)
    if kind == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local % max(torch.cuda.device_count(), 1))

    if config.dtype == "auto":
        if kind == "cuda" and torch.cuda.is_bf16_supported():
            dtype, dwhy = torch.bfloat16, "bf16 autocast on a bf16-capable GPU"
        elif kind == "cuda":
            dtype, dwhy = torch.float32, "this GPU has no bf16 support: float32"
        else:
            dtype, dwhy = torch.float32, f"float32 on {kind} (bf16 autocast is slower or unsupported there)"
    else:
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[config.dtype]
        dwhy = f"dtype={config.dtype} requested"
        if dtype == torch.bfloat16 and kind == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("dtype = 'bfloat16' requested but this GPU does not support bf16: use dtype=auto")
    reason = f"{why}; {dwhy}"
    log.debug("device %s, dtype %s: %s", device, dtype_name(dtype), reason)
    return device, dtype, reason


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast context for the forward passes; a no-op for float32."""
    enabled = dtype != torch.float32
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


@dataclass
class Distributed:
    """This process's place in a (possibly single-process) run, with its device and dtype."""

    rank: int
    world: int
    device: torch.device
    dtype: torch.dtype
    reason: str


def init_distributed(config) -> Distributed:
    """Choose device/dtype and, under torchrun (WORLD_SIZE > 1), join the process group.

    Backend: nccl for CUDA, gloo otherwise. Launch with
    `torchrun --nproc_per_node N -m adakd train ...`; torchrun sets RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR and MASTER_PORT, which `init_process_group` reads.
    """
    device, dtype, reason = choose_device_and_dtype(config)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(0, 1, device, dtype, reason)
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # rank 0 alone runs evaluation and probes while the others wait in the next collective:
        # allow an hour (nccl's default watchdog is 10 minutes) before calling a rank lost
        dist.init_process_group(backend, timeout=timedelta(minutes=60))
    reason += f"; data-parallel over {world} processes ({dist.get_backend()})"
    return Distributed(dist.get_rank(), dist.get_world_size(), device, dtype, reason)
