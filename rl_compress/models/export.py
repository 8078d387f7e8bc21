"""Export an agent's network: uint8 [B,4,84,84] in, float32 [B,A] out (Q-values or logits)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from rl_compress.atari.envs import OBS_SHAPE
from rl_compress.core.errors import UserError
from rl_compress.core.files import atomic_write_bytes

FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 17


def export(net: nn.Module, fmt: str, out: Path) -> Path:
    """Write ``net`` as ``fmt`` to ``out`` (built in memory, then written atomically: a full disk
    leaves no part file); dynamic batch size."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return write_model(exported_bytes(net, fmt), out)


def write_model(data: bytes, out: Path) -> Path:
    """Write an exported model's bytes to the file ``out`` in one piece."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out}: is a directory; give a file name")
    if not out.parent.exists():
        raise UserError(f"{out.parent}: no such directory")
    atomic_write_bytes(out, data)
    return out


def exported_bytes(net: nn.Module, fmt: str) -> bytes:
    """The ONNX or TorchScript file of ``net`` as bytes."""
    net = net.eval()
    example = torch.zeros((2, *OBS_SHAPE), dtype=torch.uint8)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            torch.onnx.export(net, (example,), buf, dynamo=False, input_names=["obs"], output_names=["out"],
                              dynamic_axes={"obs": {0: "batch"}, "out": {0: "batch"}}, opset_version=ONNX_OPSET)
        else:
            with torch.no_grad():
                traced = torch.jit.trace(net, example)
            torch.jit.save(traced, buf)
    return buf.getvalue()
