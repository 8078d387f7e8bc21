"""Export an agent's network: uint8 [B,4,84,84] in, float32 [B,A] out (Q-values or logits); for
a gmp student optionally its attention map and peaks as two more outputs."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from rl_compress.atari.envs import OBS_SHAPE
from rl_compress.core.errors import UserError
from rl_compress.core.files import atomic_write_bytes
from rl_compress.models.graph_attention import OUTPUT_NAMES, WithAttention, attention_method

FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 17


def export(net: nn.Module, fmt: str, out: Path, with_attention: bool | str = False, peaks: int = 5) -> Path:
    """Write ``net`` as ``fmt`` to ``out`` (built in memory, then written atomically: a full disk
    leaves no part file); dynamic batch size. ``with_attention``: two more outputs, the GMP map and
    ``peaks`` peaks (models/graph_attention.py)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return write_model(exported_bytes(net, fmt, with_attention, peaks), out)


def write_model(data: bytes, out: Path) -> Path:
    """Write an exported model's bytes to the file ``out`` in one piece."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out}: is a directory; give a file name")
    if not out.parent.exists():
        raise UserError(f"{out.parent}: no such directory")
    atomic_write_bytes(out, data)
    return out


def exported_bytes(net: nn.Module, fmt: str, with_attention: bool | str = False, peaks: int = 5) -> bytes:
    """The ONNX or TorchScript file of ``net`` as bytes (``with_attention``: outputs out,
    attention, peaks; True or gmp-cell, or gmp for pixel-traced attention)."""
    net = WithAttention(net, peaks, attention_method(with_attention)).eval() if with_attention else net.eval()
    outputs = list(OUTPUT_NAMES) if with_attention else ["out"]
    example = torch.zeros((2, *OBS_SHAPE), dtype=torch.uint8)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            torch.onnx.export(net, (example,), buf, dynamo=False, input_names=["obs"], output_names=outputs,
                              dynamic_axes={name: {0: "batch"} for name in ["obs", *outputs]}, opset_version=ONNX_OPSET)
        else:
            with torch.no_grad():
                traced = torch.jit.trace(net, example)
            torch.jit.save(traced, buf)
    return buf.getvalue()
