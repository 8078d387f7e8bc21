"""Export an agent's network: uint8 [B,4,84,84] in, float32 [B,A] out (Q-values or logits)."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from rl_compress.atari.envs import OBS_SHAPE
from rl_compress.core.errors import UserError

FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 17


def export(net: nn.Module, fmt: str, out: Path) -> Path:
    """Write ``net`` as ``fmt`` to ``out`` (temp file, then rename); dynamic batch size."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out}: is a directory; give a file name")
    if not out.parent.exists():
        raise UserError(f"{out.parent}: no such directory")
    net = net.eval()
    example = torch.zeros((2, *OBS_SHAPE), dtype=torch.uint8)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "onnx":
                torch.onnx.export(
                    net,
                    (example,),
                    tmp,
                    dynamo=False,
                    input_names=["obs"],
                    output_names=["out"],
                    dynamic_axes={"obs": {0: "batch"}, "out": {0: "batch"}},
                    opset_version=ONNX_OPSET,
                )
            else:
                with torch.no_grad():
                    traced = torch.jit.trace(net, example)
                traced.save(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
