"""Where the tensors of a run live: ``--device auto|cpu|cuda|cuda:N``, resolved once, and the few
helpers every hot path uses to honour it.

- ``resolve_device``: a device string (or ``torch.device``) to a ``torch.device``; ``auto`` is CUDA
  when torch sees one, else the CPU, and says which once per process; CUDA asked for on a machine
  without it is refused with one line (UserError, exit 2). On CUDA it turns on TF32 matmuls
  (Ampere and later) and cuDNN's autotuner.
- ``to_device``: a host numpy array to a tensor on the device: zero-copy on the CPU; on CUDA
  through pinned (page-locked) host memory and one non-blocking copy. The caching host allocator
  keeps each pinned block until its copy has finished, so nothing is overwritten in flight.
- ``model_device``: the device a network's weights are on (evaluation, attention maps and
  playback follow the network they are given).
- ``autocast``: bfloat16 autocast on the device's type, or a no-op.
- ``device_record``: what the card says about the device a run actually used (never a GPU that
  was merely present).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rl_compress.core.errors import UserError, arg_name

DEVICE_HELP = "auto | cpu | cuda | cuda:N (auto: cuda when torch sees one, else cpu)"
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
_announced: set[str] = set()


def check_device_spec(spec: str) -> None:
    """Refuse a --device value that is not auto, cpu, cuda or cuda:N, with one line."""
    if not isinstance(spec, str) or not _DEVICE.match(spec):
        raise UserError(f"{arg_name('device')} must be {DEVICE_HELP.split(' (')[0]}, got {spec!r}")


def device_spec(value: str | torch.device) -> str:
    """A config's device as the string the card stores: a ``torch.device`` becomes ``cpu``,
    ``cuda`` or ``cuda:N``; strings are checked (``check_device_spec``)."""
    spec = str(value) if isinstance(value, torch.device) else value
    check_device_spec(spec)
    return spec


def config_device(value: str | torch.device) -> str:
    """A config's ``device`` checked before any work: as ``device_spec`` gives it, and refused now
    (one line) when it asks for CUDA where there is none."""
    spec = device_spec(value)
    resolve_device(spec, announce=False)
    return spec


def resolve_device(spec: str | torch.device = "auto", announce: bool = True) -> torch.device:
    """The torch.device that ``spec`` names on this machine (see the module docstring); with
    ``announce``, says which one ``auto`` chose (``announce_choice``)."""
    spec = device_spec(spec)
    if spec == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(spec)
    if device.type == "cuda":
        _check_cuda(device, spec)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if announce:
        announce_choice(spec, device)
    return device


def announce_choice(spec: str | torch.device, device: torch.device) -> None:
    """Say on stderr, once per process, which device ``--device auto`` chose (call it once the
    inputs are checked and the work starts, so that a refusal stays one line)."""
    if str(spec) == "auto" and "auto" not in _announced:
        _announced.add("auto")
        print(f"device: {describe(device)} (--device auto)", file=sys.stderr)


def _check_cuda(device: torch.device, spec: str) -> None:
    if not torch.cuda.is_available():
        build = "a CPU-only build of torch" if torch.version.cuda is None else "no CUDA device visible"
        flag = arg_name("device")
        raise UserError(f"{flag} {spec}: CUDA is not available here ({build}); use {flag} cpu or auto")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise UserError(f"{arg_name('device')} {spec}: this machine has {count} CUDA device(s) "
                        f"(cuda:0..cuda:{count - 1})")


def describe(device: torch.device) -> str:
    """The device in a few words: ``cpu`` or ``cuda:0 (NVIDIA H200)``."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def device_record(device: torch.device) -> dict[str, Any]:
    """What a card records of the device a run used: its type and name; on CUDA the CUDA
    runtime of the torch build, the driver and the compute capability; always the torch build."""
    rec: dict[str, Any] = {"type": device.type, "name": describe(device), "torch": torch.__version__}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        rec["cuda"] = torch.version.cuda
        rec["capability"] = ".".join(map(str, torch.cuda.get_device_capability(index)))
        rec["driver"] = _cuda_driver()
    return rec


def _cuda_driver() -> str | None:
    """The NVIDIA driver version, from the kernel module (None where it cannot be read)."""
    try:
        with open("/proc/driver/nvidia/version") as f:
            match = re.search(r"Kernel Module\s+([\d.]+)", f.read())
        return match.group(1) if match else None
    except OSError:
        return None


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``: the same memory on the CPU; on CUDA one non-blocking
    copy from pinned host memory."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cpu":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def model_device(net: nn.Module) -> torch.device:
    """The device of a network's weights (the CPU for a network without any)."""
    for p in net.parameters():
        return p.device
    return torch.device("cpu")


def autocast(device: torch.device, enabled: bool) -> Any:
    """bfloat16 autocast (convolutions and matmuls) on ``device``'s type, or a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def available_memory() -> int:
    """Bytes of memory this machine can still give: ``MemAvailable`` of /proc/meminfo (the whole
    physical memory where that is unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(need: int, what: str) -> None:
    """Refuse, before allocating, a setting whose memory (``need`` bytes) this machine does not have."""
    have = available_memory()
    if need > have:
        raise UserError(f"{what} needs {need / 2**30:.1f} GiB of memory; this machine has {have / 2**30:.1f} GiB "
                        "available")
