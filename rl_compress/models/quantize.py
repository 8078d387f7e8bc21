"""Static int8 quantisation of an agent's ONNX model with ONNX Runtime, calibrated on frames the
agent itself plays.

The recipe, and why (measured on agents/pong/gmp15-w5-0.3pct-tuned, docs/results/deploy.md):

- QDQ format, int8 weights per output channel and uint8 activations, both *unsigned* (U8U8): on
  x86 CPUs without VNNI, ONNX Runtime's U8S8 kernels saturate 16-bit intermediate sums, which took
  the actions' agreement with fp32 from 0.94 (the same model run without fusion) to 0.77.
- The uint8 input keeps its exact values (scale 1, zero point 0), and the Q-values / logits stay
  float32: quantising the output to 256 levels collapses near ties onto the first action.
- Before calibration every convolution's output channels are rescaled so that all channels of a
  layer peak at the same value on the calibration frames, and the next layer takes the inverse
  scale (cross-layer equalisation, Nagel et al. 2019). ReLU and the global max pool commute with
  positive scales, so the fp32 network is unchanged; one per-tensor activation scale then fits
  every channel (0.68 -> 0.77 agreement before the kernel fix).
"""

from __future__ import annotations

import copy
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from rl_compress.atari.envs import OBS_SHAPE, played_observations
from rl_compress.atari.evaluate import DEFAULT_PROTOCOL
from rl_compress.core.errors import UserError
from rl_compress.core.optional import require
from rl_compress.models.export import exported_bytes
from rl_compress.models.networks import GMPStudent, conv_activations, conv_layers

QUANTIZE_CHOICES = ("int8",)
METADATA_KEY = "rl_compress.int8"
CALIBRATION_BATCH = 64


@dataclass
class Calibration:
    """How an int8 model was calibrated, and how closely it follows the fp32 network."""

    game: str
    frames: int  # calibration frames, played by the agent (seed ``seed``)
    seed: int
    method: str  # ONNX Runtime's calibration method
    equalized: bool  # channels rescaled before calibration (gmp students)
    held_out_frames: int  # frames of other games (seed + 1000) the agreement is measured on
    agreement: float  # share of held-out frames where int8 and fp32 take the same action
    fp32_bytes: int  # the fp32 ONNX file `export` writes


def played_frames(net: nn.Module, game: str, n: int, seed: int) -> np.ndarray:
    """``n`` observations uint8 [n,4,84,84] that ``net`` (on the CPU) meets playing ``game`` under
    the evaluation protocol (greedy with its epsilon), 8 games at a time, env i seeded ``seed + i``."""

    def greedy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.as_tensor(obs)).argmax(1).numpy()

    return played_observations(game, n, greedy, seed, DEFAULT_PROTOCOL.epsilon)


def equalize_channels(net: GMPStudent, frames: np.ndarray) -> GMPStudent:
    """A copy of ``net`` whose convolutions' output channels all peak at the layer's largest value
    on ``frames``; the next layer (or the hidden layer / head after the pool) takes the inverse
    scale, so the outputs are the same (ReLU and max commute with positive scales)."""
    net = copy.deepcopy(net).cpu().eval()
    convs = conv_layers(net)
    x = torch.as_tensor(frames)
    with torch.no_grad():
        for i, conv in enumerate(convs):
            peak = conv_activations(net.conv, x)[i].amax(dim=(0, 2, 3)).clamp_min(1e-6)
            scale = peak.max() / peak
            conv.weight.mul_(scale[:, None, None, None])
            conv.bias.mul_(scale)
            if i + 1 < len(convs):
                convs[i + 1].weight.div_(scale[None, :, None, None])
            else:
                after = net.hidden[0] if isinstance(net.hidden, nn.Sequential) else net.head
                after.weight.div_(scale[None, :])
    return net


def quantize_int8(net: nn.Module, game: str, frames: int = 2000, seed: int = 0, with_attention: bool | str = False,
                  peaks: int = 5) -> tuple[bytes, Calibration]:
    """The int8 ONNX model of ``net`` (uint8 [B,4,84,84] in, float32 [B,A] out; ``with_attention``:
    the GMP map and peaks too, computed in float from the int8 convolutions) and its calibration:
    ``frames`` frames the agent plays from ``seed``, the agreement measured on ``frames // 2``
    frames of other games (seed + 1000)."""
    if frames < CALIBRATION_BATCH:
        raise UserError(f"calibration needs at least {CALIBRATION_BATCH} frames, got {frames}")
    require("onnxruntime.quantization")
    net = copy.deepcopy(net).cpu().eval()
    calibration = played_frames(net, game, frames, seed)
    held_out = played_frames(net, game, frames // 2, seed + 1000)
    with torch.no_grad():
        reference = net(torch.as_tensor(held_out)).argmax(1).numpy()
    equalized = isinstance(net, GMPStudent)
    if equalized:
        net = equalize_channels(net, calibration)
    fp32 = exported_bytes(net, "onnx", with_attention, peaks)  # as long as the unequalised file: same tensors
    model = compact(_fused(compact(_skip_input_cast(_ort_static_int8(fp32, calibration, bool(with_attention))))))
    agreement = float(np.mean(onnx_actions(model.SerializeToString(), held_out) == reference))
    cal = Calibration(game, frames, seed, "minmax", equalized, len(held_out), agreement, len(fp32))
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(asdict(cal))})
    return model.SerializeToString(), cal


def _ort_static_int8(fp32: bytes, calibration: np.ndarray, convs_and_head_only: bool = False) -> onnx.ModelProto:
    """ONNX Runtime's static QDQ quantisation of the fp32 model (recipe in the module docstring);
    ``convs_and_head_only``: the attention's own ops stay float."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"obs": calibration[i : i + CALIBRATION_BATCH]}
                                 for i in range(0, len(calibration), CALIBRATION_BATCH)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, out = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(fp32)
        quant_pre_process(str(src), str(pre))
        cast = next(n.output[0] for n in onnx.load(str(pre)).graph.node if n.op_type == "Cast")
        exact_input = {"scale": np.array(1.0, dtype=np.float32), "zero_point": np.array(0, dtype=np.uint8)}
        only = {"op_types_to_quantize": ["Conv", "Relu", "ReduceMax", "Gemm"]} if convs_and_head_only else {}
        quantize_static(str(pre), str(out), Frames(), quant_format=QuantFormat.QDQ, per_channel=True, **only,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                        extra_options={"OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"],
                                       "TensorQuantOverrides": {cast: [exact_input]}})
        return onnx.load(str(out))


def _fused(model: onnx.ModelProto) -> onnx.ModelProto:
    """The QDQ model with ONNX Runtime's QDQ fusions applied (DequantizeLinear -> Conv ->
    QuantizeLinear becomes QLinearConv), kept only if every node is still a standard ONNX op: the
    same arithmetic as ONNX Runtime runs, in a third of the nodes."""
    ort = require("onnxruntime")
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(Path(tmp, "fused.onnx"))
        ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        fused = onnx.load(opts.optimized_model_filepath)
    return fused if all(n.domain in ("", "ai.onnx") for n in fused.graph.node) else model


def _skip_input_cast(model: onnx.ModelProto) -> onnx.ModelProto:
    """Feed the uint8 input straight to the first quantised op when the graph casts it to float
    only to quantise it again with scale 1 and zero point 0 (an identity)."""
    g = model.graph
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
    cast = next((n for n in g.node if n.op_type == "Cast" and n.input[0] == g.input[0].name), None)
    quant = next((n for n in g.node if n.op_type == "QuantizeLinear" and cast is not None and n.input[0] == cast.output[0]), None)
    if quant is None or len(quant.input) < 3 or float(inits.get(quant.input[1], 0)) != 1.0:
        return model
    zp = inits.get(quant.input[2])
    if zp is None or zp.dtype != np.uint8 or zp.any():
        return model
    for node in g.node:
        node.input[:] = [g.input[0].name if name == quant.output[0] else name for name in node.input]
    g.node.remove(cast)
    g.node.remove(quant)
    return model


def compact(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with short tensor names and no node names or doc strings (the graph's input and
    output names stay): a tiny network's QDQ graph is otherwise mostly names."""
    g = model.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, format(len(names), "x"))

    for t in g.initializer:
        t.name = short(t.name)
        t.doc_string = ""
    for node in g.node:
        node.name, node.doc_string = "", ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del g.value_info[:]
    model.doc_string = ""
    _drop_zero_points(g)
    used = {node.domain for node in g.node}
    kept = [o for o in model.opset_import if o.domain in used or o.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model


def _drop_zero_points(g: onnx.GraphProto) -> None:
    """Remove zero points that say what their absence says: all zeros of uint8 (the default type of
    QuantizeLinear's output), or all zeros on a DequantizeLinear (its input gives the type); then the
    initializers nobody reads any more."""
    inits = {t.name: t for t in g.initializer}
    for node in g.node:
        zp = inits.get(node.input[2]) if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 else None
        if zp is None or onnx.numpy_helper.to_array(zp).any():
            continue
        if zp.data_type == onnx.TensorProto.UINT8 or node.op_type == "DequantizeLinear":
            del node.input[2]
    read = {name for node in g.node for name in node.input}
    for t in [t for t in g.initializer if t.name not in read]:
        g.initializer.remove(t)


def onnx_session(model: bytes, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session of ``model`` with ``threads`` intra-op threads."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def onnx_actions(model: bytes, obs: np.ndarray, batch: int = 256) -> np.ndarray:
    """Greedy actions int64 [N] of the ONNX ``model`` on uint8 observations [N,4,84,84]."""
    sess = onnx_session(model)
    return np.concatenate([sess.run(["out"], {"obs": obs[i : i + batch]})[0].argmax(1)
                           for i in range(0, len(obs), batch)]).astype(np.int64)


def read_calibration(model: bytes) -> dict[str, Any] | None:
    """The calibration an int8 model carries in its metadata, or None for another model."""
    props = {p.key: p.value for p in onnx.load_from_string(model).metadata_props}
    return json.loads(props[METADATA_KEY]) if METADATA_KEY in props else None


def onnx_net(path: Path, num_actions: int) -> OnnxNet:
    """The ONNX model in ``path`` behind a network's interface, checked to map one uint8 [1,4,84,84]
    observation to ``num_actions`` outputs; one UserError line for a missing or unreadable file."""
    require("onnxruntime")
    try:
        net = OnnxNet(Path(path).read_bytes())
        out = net(torch.zeros((1, *OBS_SHAPE), dtype=torch.uint8))
    except OSError as e:
        raise UserError(f"{path}: {e.strerror or e}") from None
    except Exception as e:  # onnxruntime's errors have no common base class
        raise UserError(f"{path}: not an ONNX model this agent can run ({str(e).splitlines()[0][:200]})") from None
    if tuple(out.shape) != (1, num_actions):
        raise UserError(f"{path}: outputs {list(out.shape)} for one observation; the agent has {num_actions} actions")
    return net


class OnnxNet(nn.Module):
    """An exported model run by ONNX Runtime behind a network's interface (uint8 [B,4,84,84] in,
    float32 [B,A] out), so that ``evaluate`` plays it exactly as it plays our networks."""

    def __init__(self, model: bytes, threads: int = 1) -> None:
        super().__init__()
        self.session = onnx_session(model, threads)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Outputs of the ONNX model for a uint8 batch."""
        return torch.from_numpy(self.session.run(["out"], {"obs": obs.cpu().numpy().astype(np.uint8)})[0])
