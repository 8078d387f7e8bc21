"""Can learned rounding (AdaRound, Nagel et al. 2020) lift the int8 model's agreement with fp32?

The recipe of `export --quantize int8` is run once (channels equalised, ONNX Runtime's static QDQ
quantisation); each weight's per-channel scale and zero point are read from that model (ONNX
Runtime rounds uint8 weights symmetrically: zero point 128), the rounding of every weight up or
down is learned on the calibration frames (fp32 logits as MSE targets, weights only, the rounding
regulariser annealed from beta 20 to 2), the learned uint8 weights are written into the QDQ model,
which is then fused and shortened as the export does; the agreement is measured with ONNX Runtime
on held-out frames of other games, as the export measures it.

Usage: python experiments/pilots/adaround_int8.py agents/pong/gmp15-w5-0.3pct-tuned [--iters 1500]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from rl_compress.models import quantize as Q
from rl_compress.models.agent import load_agent
from rl_compress.models.export import exported_bytes
from rl_compress.models.networks import conv_layers

PARAMS = ["conv.0.weight", "conv.2.weight", "conv.4.weight", "conv.6.weight", "head.weight"]


def ort_grids(qdq: onnx.ModelProto, net: torch.nn.Module) -> dict[str, tuple[str, torch.Tensor, torch.Tensor]]:
    """Each quantised weight of ``net`` (by shape): its initializer in ``qdq``, scale and zero point
    (in torch's units: conv.0 takes pixels in [0, 255], the ONNX graph the folded 1/255)."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in qdq.graph.initializer}
    params = dict(net.named_parameters())
    grids = {}
    for n in qdq.graph.node:
        w = inits.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if w is None or w.dtype != np.uint8 or w.ndim < 2:
            continue
        name = next(p for p in PARAMS if tuple(params[p].shape) == w.shape)
        unit = 255.0 if name == "conv.0.weight" else 1.0
        shape = (-1,) + (1,) * (w.ndim - 1)
        grids[name] = (n.input[0], torch.tensor(inits[n.input[1]] * unit, dtype=torch.float32).view(shape),
                       torch.tensor(inits[n.input[2]].astype(np.float32)).view(shape))
    return grids


def learn_rounding(net: torch.nn.Module, grids: dict, frames: np.ndarray, iters: int, lam: float) -> list[torch.Tensor]:
    """The uint8 weights [per PARAMS] whose rounding minimises the logits' MSE to the fp32 network's."""
    layers = conv_layers(net) + [net.head]
    w0 = [layer.weight.detach().clone() for layer in layers]
    scale, zero = [grids[p][1] for p in PARAMS], [grids[p][2] for p in PARAMS]
    floor = [torch.floor(w / s) for w, s in zip(w0, scale)]
    rest = [(w / s - f).clamp(0.01, 0.99) for w, s, f in zip(w0, scale, floor)]
    v = [torch.nn.Parameter(-torch.log(1.2 / (r + 0.1) - 1)) for r in rest]  # h(v) = rest at the start

    def h(x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.sigmoid(x) * 1.2 - 0.1, 0, 1)

    def uint8(hard: bool) -> list[torch.Tensor]:
        return [torch.clamp(f + ((h(x) >= 0.5).float() if hard else h(x)) + z, 0, 255) for f, x, z in zip(floor, v, zero)]

    def use(q: list[torch.Tensor]) -> None:
        for layer, qv, s, z in zip(layers, q, scale, zero):
            del layer.weight
            layer.weight = s * (qv - z)

    x = torch.as_tensor(frames)
    with torch.no_grad():
        target = net(x)
    opt, t0 = torch.optim.Adam(v, lr=1e-2), time.time()
    for it in range(iters):
        idx = torch.randint(0, len(frames), (256,))
        use(uint8(False))
        rec = F.mse_loss(net(x[idx]), target[idx])
        reg = sum((1 - (2 * h(x_) - 1).abs().pow(20 - 18 * it / iters)).sum() for x_ in v)
        opt.zero_grad()
        (rec + (0 if it < iters // 5 else lam * reg)).backward()
        opt.step()
        if it % 500 == 0:
            print(f"{it} mse {float(rec):.2e} {time.time() - t0:.0f}s", flush=True)
    with torch.no_grad():
        hard = uint8(True)
        use(hard)
    return hard


def main(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    agent = load_agent(Path(args.agent))
    net, game = agent.net.cpu().eval(), agent.game
    calibration = Q.played_frames(net, game, 2000, 0)
    held_out = Q.played_frames(net, game, 1000, 1000)
    with torch.no_grad():
        reference = net(torch.as_tensor(held_out)).argmax(1).numpy()
    eq = Q.equalize_channels(net, calibration)
    qdq = Q._ort_static_int8(exported_bytes(eq, "onnx", False, 5), calibration)

    def agreement(model: onnx.ModelProto) -> tuple[float, int]:
        b = Q.compact(Q._fused(Q.compact(Q._skip_input_cast(onnx.load_from_string(model.SerializeToString())))))
        data = b.SerializeToString()
        return float(np.mean(Q.onnx_actions(data, held_out) == reference)), len(data)

    agree, size = agreement(qdq)
    print(f"nearest rounding (the export): agreement {agree:.3f}, {size} bytes", flush=True)
    grids = ort_grids(qdq, eq)
    hard = learn_rounding(eq, grids, calibration, args.iters, args.lam)
    with torch.no_grad():
        torch_agree = np.mean(eq(torch.as_tensor(held_out)).argmax(1).numpy() == reference)
    print(f"learned rounding, weights only, in torch: agreement {torch_agree:.3f}")
    inits = {t.name: t for t in qdq.graph.initializer}
    for name, q in zip(PARAMS, hard):
        tensor = inits[grids[name][0]]
        tensor.CopyFrom(onnx.numpy_helper.from_array(q.numpy().astype(np.uint8), tensor.name))
    agree, size = agreement(qdq)
    print(f"learned rounding in the int8 model (ONNX Runtime): agreement {agree:.3f}, {size} bytes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="AdaRound on ONNX Runtime's own weight grid; agreement of the "
                                                 "int8 model with fp32 before and after.")
    parser.add_argument("agent", help="a gmp student directory")
    parser.add_argument("--iters", type=int, default=1500, help="Adam steps (batches of 256 calibration frames)")
    parser.add_argument("--lam", type=float, default=0.01, help="weight of the rounding regulariser")
    main(parser.parse_args())
