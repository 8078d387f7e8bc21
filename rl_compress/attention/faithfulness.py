"""Is a map faithful to the network it explains? Deletion and insertion curves on the 84x84 input,
a cascading model-randomisation sanity check, and the maps of the methods compared, all on one
normalised scale (each map sums to 1 over the 84x84 grid).

- Deletion (Petsiuk et al. 2018, RISE): blur the share ``f`` of the input pixels a map ranks highest,
  in all 4 stacked frames, and ask whether the network still takes the action the map explains. A
  faithful map makes the action go early: a low area under the "action kept" curve.
- Insertion: start from the blurred input and put back the top share ``f`` of pixels: a faithful map
  brings the action back early (a high area).
- Sanity (Adebayo et al. 2018): re-initialise the network's layers from the head down, one more at a
  time, and take the Spearman rank correlation of each map with the trained network's map of the same
  frame. A map that explains the network must change: the correlation must fall.

Methods: this package's ``gmp``, ``gmp-cell``, ``gmp-occlusion``, ``gradcam`` and ``perturbation`` (``models.maps``), two
of captum's attribution methods through the library (``integrated-gradients``, ``occlusion``; the
``explain`` extra), and two maps that ignore the network (``random``, ``centre``) as the floor.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from rl_compress.core.device import model_device, to_device
from rl_compress.core.errors import UserError
from rl_compress.core.optional import require
from rl_compress.models.maps import GRID, METHODS, attention, blurred
from rl_compress.models.networks import GMPStudent

CAPTUM_METHODS = ("integrated-gradients", "occlusion")
FLOOR_METHODS = ("random", "centre")
ALL_METHODS = (*METHODS, *CAPTUM_METHODS, *FLOOR_METHODS)
FRACTIONS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)  # shares of the 84x84 pixels deleted or inserted


def normalised(maps: np.ndarray) -> np.ndarray:
    """Maps [B,84,84] made >= 0 and summing to 1 each (a uniform map where one is all zero)."""
    maps = np.clip(np.nan_to_num(maps.astype(np.float64)), 0, None)
    sums = maps.reshape(len(maps), -1).sum(1)
    maps[sums <= 0] = 1.0
    return (maps / maps.reshape(len(maps), -1).sum(1)[:, None, None]).astype(np.float32)


def _screen_to_grid(maps: np.ndarray) -> np.ndarray:
    return np.stack([cv2.resize(m, (GRID, GRID), interpolation=cv2.INTER_AREA) for m in maps])


def _captum_map(method: str, net: nn.Module, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """captum's Integrated Gradients (from the blurred input, 16 steps) or Occlusion (4x8x8
    windows, stride 4, replaced by the blurred input), summed over the 4 stacked frames."""
    attr = require("captum.attr")
    device = model_device(net)
    x = to_device(obs, device).float()
    base = to_device(blurred(obs), device)
    target = torch.as_tensor(actions, device=device)
    if method == "integrated-gradients":
        out = attr.IntegratedGradients(net).attribute(x, baselines=base, target=target, n_steps=16)
        return out.abs().sum(1).detach().cpu().numpy()
    out = attr.Occlusion(net).attribute(x, sliding_window_shapes=(4, 8, 8), strides=(4, 4, 4), baselines=base,
                                        target=target)
    return out.sum(1).clamp(min=0).detach().cpu().numpy()


def _floor_map(method: str, n: int, seed: int) -> np.ndarray:
    if method == "random":
        return np.random.default_rng(seed).random((n, GRID, GRID)).astype(np.float32)
    yy, xx = np.mgrid[0:GRID, 0:GRID].astype(np.float32)
    centre = np.exp(-((xx - GRID / 2) ** 2 + (yy - GRID / 2) ** 2) / (2 * 20.0**2))
    return np.repeat(centre[None], n, axis=0)


def check_method(method: str, net: nn.Module) -> None:
    """Refuse a method this network cannot be explained by, with one line."""
    if method not in ALL_METHODS:
        raise UserError(f"unknown map method {method!r}; choose from {', '.join(ALL_METHODS)}")
    if method.startswith("gmp") and not isinstance(net, GMPStudent):
        raise UserError(f"{method} needs a global-max-pool student; this network has none")


def grid_maps(method: str, net: nn.Module, obs: np.ndarray, actions: np.ndarray, seed: int = 0) -> np.ndarray:
    """The ``method``'s maps of ``obs`` [B,4,84,84] for ``actions`` on the 84x84 input grid, each
    normalised to sum 1 (screen maps of ``models.maps`` resized back by area)."""
    check_method(method, net)
    if method in METHODS:
        raw = _screen_to_grid(attention(method, net, obs, actions).maps)
    elif method in CAPTUM_METHODS:
        raw = _captum_map(method, net, obs, actions)
    else:
        raw = _floor_map(method, len(obs), seed)
    return normalised(raw)


def _ranked_pixels(maps: np.ndarray, seed: int) -> np.ndarray:
    """Pixel indices [B,84*84] from the highest map value down (ties in a random order)."""
    noise = np.random.default_rng(seed).random(maps.shape) * 1e-12
    return np.argsort(-(maps.astype(np.float64) + noise).reshape(len(maps), -1), axis=1)


def _greedy(net: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(to_device(x, model_device(net))).argmax(1).cpu().numpy()


def _area(fractions: tuple[float, ...], values: list[float], start: float) -> float:
    """Normalised area under a curve that starts at (0, ``start``), by the trapezoid rule."""
    xs, ys = (0.0, *fractions), (start, *values)
    area = sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(fractions)))
    return area / xs[-1]


def deletion_insertion(net: nn.Module, obs: np.ndarray, maps: np.ndarray, actions: np.ndarray,
                       fractions: tuple[float, ...] = FRACTIONS, seed: int = 0) -> dict[str, Any]:
    """The share of frames whose greedy action is still (deletion) or again (insertion) ``actions``
    after the top share ``f`` of each map's pixels is blurred away or put back, for each ``f`` of
    ``fractions``; with the normalised areas under both curves."""
    x, soft = obs.astype(np.float32), blurred(obs)
    order = _ranked_pixels(maps, seed)
    kept, back = [], []
    for f in fractions:
        mask = np.zeros((len(obs), GRID * GRID), dtype=bool)
        np.put_along_axis(mask, order[:, : max(1, round(f * GRID * GRID))], True, axis=1)
        mask = mask.reshape(len(obs), 1, GRID, GRID)
        kept.append(float((_greedy(net, np.where(mask, soft, x)) == actions).mean()))
        back.append(float((_greedy(net, np.where(mask, x, soft)) == actions).mean()))
    from_blur = float((_greedy(net, soft) == actions).mean())
    return {"fractions": list(fractions), "deletion_kept": kept, "insertion_recovered": back,
            "insertion_start": from_blur, "deletion_auc": _area(fractions, kept, 1.0),
            "insertion_auc": _area(fractions, back, from_blur)}


def randomisation_stages(net: nn.Module) -> list[str]:
    """The names of the network's weight layers from the output down (the sanity check's order)."""
    return [name for name, m in reversed(list(net.named_modules())) if isinstance(m, (nn.Conv2d, nn.Linear))]


def randomised(net: nn.Module, layers: list[str], seed: int) -> nn.Module:
    """A copy of ``net`` whose named ``layers`` are re-initialised (PyTorch's default init, seeded)."""
    torch.manual_seed(seed)
    out = copy.deepcopy(net)
    modules = dict(out.named_modules())
    for name in layers:
        modules[name].reset_parameters()
    return out.eval()


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two flattened maps (scipy; NaN for a constant map)."""
    stats = require("scipy.stats")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(stats.spearmanr(a.ravel(), b.ravel()).statistic)


def sanity_check(method: str, net: nn.Module, obs: np.ndarray, actions: np.ndarray, seed: int = 0,
                 trained: np.ndarray | None = None) -> dict[str, Any]:
    """Cascading randomisation: for each stage (the head, then one more layer down each time), the
    mean Spearman correlation between the trained network's maps and the randomised network's maps
    of the same frames and actions. ``passes``: with every layer randomised, the correlation is
    below 0.5 (the map depends on what the network learned; a map that ignores the network stays at 1)."""
    if trained is None:  # the trained network's maps, unless the caller has them already
        trained = grid_maps(method, net, obs, actions, seed)
    stages, names, rows = randomisation_stages(net), [], []
    for i in range(len(stages)):
        names.append(stages[i])
        other = grid_maps(method, randomised(net, names, seed + 1 + i), obs, actions, seed + 1 + i)
        corr = [_spearman(t, o) for t, o in zip(trained, other)]
        finite = [c for c in corr if math.isfinite(c)]
        rows.append({"randomised_down_to": stages[i], "spearman": float(np.mean(finite)) if finite else math.nan})
    last = rows[-1]["spearman"]
    return {"stages": rows, "passes": bool(math.isfinite(last) and last < 0.5)}
