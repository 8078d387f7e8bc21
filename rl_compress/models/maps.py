"""Attention maps over the game screen: from the global max pool (GMP), Grad-CAM and
perturbation saliency.

GMP: for the chosen action, each channel's max sits on one cell of the 7x7 map; its
contribution to the action's logit is head weight x activation (for a hidden layer:
gradient x activation). Method gmp traces each max down the convolutions to the input pixel
it rests on (``winner_path``); gmp-cell stops at the centre of the cell's receptive field on
the 84x84 input (36x36 at stride 8 for the teacher's geometry, computed from the network).
Either point is carried to the 210x160 RGB screen by inverting the preprocessing's resize,
giving a smooth map >= 0 and top-K peaks. Method gmp-occlusion lets GMP propose and deletion
weigh: every channel's max is traced to its pixel as in gmp, that pixel's neighbourhood is blurred
away (as perturbation saliency deletes), and the channel counts by how much the explained action's
probability drops, one forward pass per channel.

Coordinates: x right, y down. A point at 84-grid pixel centre u maps to screen pixel
(u + 0.5) * 160 / 84 - 0.5 horizontally and (u + 0.5) * 210 / 84 - 0.5 vertically, the
inverse of the area resize (both keep pixel centres aligned).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch
from torch import nn

from rl_compress.core.device import model_device, to_device
from rl_compress.core.errors import UserError, arg_name
from rl_compress.models.networks import GMPStudent, conv_activations, conv_layers, receptive_field

SCREEN_H, SCREEN_W = 210, 160


GRID = 84


METHODS = ("gmp", "gmp-cell", "gmp-occlusion", "gradcam", "perturbation")
BLUR_SIGMA = 3.0  # how a pixel is deleted (perturbation saliency, gmp-occlusion, the deletion test): a Gaussian blur
OCCLUSION_RADIUS = 8.0  # gmp-occlusion: the disc (84-grid px) blurred around each channel's traced pixel


def blurred(obs: np.ndarray) -> np.ndarray:
    """Each stacked frame Gaussian-blurred (sigma ``BLUR_SIGMA``): float32 [B,4,84,84], the input a
    deleted pixel takes."""
    frames = obs.astype(np.float32).reshape(-1, GRID, GRID)
    out = np.stack([cv2.GaussianBlur(f, (0, 0), BLUR_SIGMA) for f in frames])
    return out.reshape(obs.shape).astype(np.float32)


@dataclass
class Attention:
    """Attention of one batch: maps over the screen and top-K peaks."""

    maps: np.ndarray  # float32 [B,210,160], >= 0
    peaks: np.ndarray  # float32 [B,K,3] (x, y, weight) in screen pixels; weight 0 = no peak
    actions: np.ndarray  # int64 [B], the actions the maps explain


def grid_to_screen(u: np.ndarray, axis: str) -> np.ndarray:
    """84-grid pixel coordinates (centres) to screen pixel coordinates, x or y."""
    scale = SCREEN_W / GRID if axis == "x" else SCREEN_H / GRID
    return (np.asarray(u, dtype=np.float64) + 0.5) * scale - 0.5


def cell_centres(net: nn.Module, cells: int = 7) -> np.ndarray:
    """Centre, in 84-grid pixels, of each cell's receptive field along one axis."""
    return _centres(*receptive_field(net), cells)


def _centres(size: int, stride: int, offset: int, cells: int) -> np.ndarray:
    """``cell_centres`` from the receptive field (size, stride, offset)."""
    return offset + np.arange(cells) * stride + (size - 1) / 2.0


def _gaussian(d2: np.ndarray, sigma: float) -> np.ndarray:
    """exp(-d2 / (2 sigma^2)) as float32, with values below 1e-12 set to 0: far tails would
    otherwise be denormal floats, which make every matmul and blend that touches them several
    times slower on CPU (a 210x160 map: 220 us instead of 65), and are invisible anyway."""
    g = np.exp(-np.asarray(d2, dtype=np.float64) / (2.0 * sigma**2))
    g[g < 1e-12] = 0.0
    return g.astype(np.float32)


@lru_cache(maxsize=8)
def cell_kernels(size: int, stride: int, offset: int, cells: int) -> np.ndarray:
    """One Gaussian (sigma = receptive field / 6) per cell of the last conv map, centred on
    the cell's receptive field on the 84x84 grid: float32 [cells*cells, 84*84], row-major cells."""
    centres = _centres(size, stride, offset, cells)
    sigma = size / 6.0
    yy, xx = np.mgrid[0:GRID, 0:GRID].astype(np.float32)
    ker = [_gaussian((xx - cx) ** 2 + (yy - cy) ** 2, sigma) for cy in centres for cx in centres]
    return np.stack(ker).reshape(cells * cells, GRID * GRID)


def cells_to_screen(net: nn.Module, cell_weights: np.ndarray) -> np.ndarray:
    """A smooth screen map [210,160] from weights on the last conv map's cells [H,W]."""
    h = cell_weights.shape[0]
    ker = cell_kernels(*receptive_field(net), h)
    return to_screen((cell_weights.reshape(1, -1).astype(np.float32) @ ker).reshape(GRID, GRID))


def to_screen(map84: np.ndarray) -> np.ndarray:
    """Resize an 84x84 map to the 210x160 screen (bilinear, the inverse geometry of the area resize)."""
    return np.maximum(cv2.resize(map84, (SCREEN_W, SCREEN_H), interpolation=cv2.INTER_LINEAR), 0.0)


def _empty_attention(b: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero maps [B,210,160] and peaks [B,K,3] marked as absent (x = y = -1, weight 0)."""
    maps = np.zeros((b, SCREEN_H, SCREEN_W), dtype=np.float32)
    peaks = np.zeros((b, k, 3), dtype=np.float32)
    peaks[:, :, :2] = -1.0
    return maps, peaks


def gmp_cells(maps: torch.Tensor, channel_weight: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel: argmax row, argmax col and contribution (weight x max activation, >= 0).

    maps [B,C,H,W]; channel_weight [B,C] (the head weight of the explained action, or the
    gradient of its logit with respect to the pooled value). Returns three [B,C] arrays.
    """
    val, idx = maps.flatten(2).max(2)
    return _cells_from_pool(val, idx, maps.shape[-1], channel_weight)


def _cells_from_pool(
    val: torch.Tensor, idx: torch.Tensor, width: int, channel_weight: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``gmp_cells`` from the pool's max values and flat argmax indices [B,C] of a map ``width`` wide."""
    contrib = (channel_weight * val).clamp_min(0.0)
    idx_np = idx.cpu().numpy()
    return idx_np // width, idx_np % width, contrib.detach().cpu().numpy()


def gmp_attention_from_cells(
    net: nn.Module, rows: np.ndarray, cols: np.ndarray, contrib: np.ndarray, k: int, cells: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    """Screen maps [B,210,160] and peaks [B,K,3] from the argmax cells and their contributions
    (channels whose maxima share a cell add up)."""
    grids = np.zeros((rows.shape[0], cells, cells), dtype=np.float32)
    for i, grid in enumerate(grids):
        np.add.at(grid, (rows[i], cols[i]), contrib[i])
    return cell_grid_attention(net, grids, k)


def cell_grid_attention(net: nn.Module, grids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Screen maps [B,210,160] and peaks [B,K,3] (at the cells' receptive-field centres) from
    weights >= 0 on the last conv map's cells [B,H,W]."""
    b, cells = grids.shape[0], grids.shape[-1]
    centres = cell_centres(net, cells)
    maps, peaks = _empty_attention(b, k)
    for i in range(b):
        flat = grids[i].ravel()
        if flat.max() <= 0:
            continue
        maps[i] = cells_to_screen(net, grids[i])
        for j, o in enumerate(np.argsort(-flat, kind="stable")[:k]):
            if flat[o] > 0:
                peaks[i, j] = (grid_to_screen(centres[o % cells], "x"), grid_to_screen(centres[o // cells], "y"),
                               flat[o] / flat.max())
    return maps, peaks


def _explained_actions(out: torch.Tensor, actions: np.ndarray | None) -> torch.Tensor:
    return out.argmax(1) if actions is None else torch.as_tensor(actions, dtype=torch.int64, device=out.device)


def winner_path(
    convs: list[nn.Conv2d], acts: list[np.ndarray], obs: np.ndarray,
    frames: np.ndarray, channels: np.ndarray, rows: np.ndarray, cols: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Trace each channel's max on the last conv map down to one input pixel.

    At every layer (last to first) the unit on the path splits its evidence over the inputs
    of its window by their positive contributions, weight x activation (the z+ rule of
    excitation backprop / LRP, Zhang et al. 2016); the window position holding the most of it
    is the next unit, and its channels carry the evidence on. Uses only the activations of
    the forward pass. ``acts``: the ReLU outputs of the convs [B,C,H,W]; ``obs``: uint8
    [B,4,84,84]; one path per (frames[i], channels[i]) starting at (rows[i], cols[i]) of the
    last map. Returns the input pixel (row, col) of each path on the 84x84 grid.
    """
    n = len(frames)
    idx = np.arange(n)
    relevance = np.zeros((n, convs[-1].out_channels), dtype=np.float32)
    relevance[idx, channels] = 1.0
    r, c = rows.astype(np.int64), cols.astype(np.int64)
    for layer in range(len(convs) - 1, -1, -1):
        conv = convs[layer]
        if conv.padding[0] != 0 or conv.dilation[0] != 1:
            raise UserError("GMP attention traces convolutions without padding or dilation only")
        k, s = conv.kernel_size[0], conv.stride[0]
        inp = acts[layer - 1] if layer > 0 else obs
        off = np.arange(k)
        yy = (s * r)[:, None, None, None] + off[None, None, :, None]
        xx = (s * c)[:, None, None, None] + off[None, None, None, :]
        cin = np.arange(inp.shape[1])[None, :, None, None]
        window = inp[frames[:, None, None, None], cin, yy, xx].astype(np.float32).reshape(n, -1)  # [n,Cin*k*k]
        # inputs are >= 0 (pixels, ReLU outputs), so max(w * x, 0) = max(w, 0) * x: the positive
        # contributions z[n,o,i] = w+[o,i] x[n,i] factor, and two matmuls replace the [n,Cout,Cin*k*k] array
        wpos = np.maximum(conv.weight.detach().cpu().numpy().reshape(conv.out_channels, -1), 0.0)
        share = relevance / (window @ wpos.T + 1e-12)  # [n,Cout]: relevance per unit of z
        spread = (window * (share @ wpos)).reshape(n, -1, k * k)  # [n,Cin,k*k]
        best = spread.sum(1).argmax(1)
        r, c = s * r + best // k, s * c + best % k
        relevance = spread[idx, :, best]
    return r, c


@lru_cache(maxsize=8)
def _screen_gaussians(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """1-D Gaussians (sigma in 84-grid px) centred on each 84-grid pixel, sampled at the screen
    pixels: float32 [84,210] along y and [84,160] along x."""
    centres = np.arange(GRID, dtype=np.float64)
    out = []
    for size, axis in ((SCREEN_H, "y"), (SCREEN_W, "x")):
        d = np.arange(size, dtype=np.float64)[None] - grid_to_screen(centres, axis)[:, None]
        out.append(_gaussian(d**2, sigma * size / GRID))
    return out[0], out[1]


def path_attention(
    net: nn.Module, acts: list[torch.Tensor], obs: np.ndarray, contrib: np.ndarray, rows: np.ndarray,
    cols: np.ndarray, k: int, traced: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Screen maps [B,210,160] and peaks [B,K,3] from each contributing channel's max traced
    to an input pixel (``winner_path``, or ``traced``: every channel's pixel, rows and columns
    [B,C], when the caller has them); channels that end on the same pixel add up. The map
    is a Gaussian per pixel, sigma half the first convolution's kernel."""
    convs = conv_layers(net)
    frames, channels = np.nonzero(contrib > 0)
    b = contrib.shape[0]
    maps, peaks = _empty_attention(b, k)
    if len(frames) == 0:
        return maps, peaks
    if traced is None:
        py, px = winner_path(convs, [a.cpu().numpy() for a in acts], obs, frames, channels,
                             rows[frames, channels], cols[frames, channels])
    else:
        py, px = traced[0][frames, channels], traced[1][frames, channels]
    gy, gx = _screen_gaussians(convs[0].kernel_size[0] / 2.0)
    # channels of a frame that end on the same pixel add up: one weight per (frame, pixel), sorted
    uniq, inv = np.unique((frames * GRID + py) * GRID + px, return_inverse=True)
    weight = np.bincount(inv.ravel(), weights=contrib[frames, channels]).astype(np.float32)
    frame, pixel = uniq // (GRID * GRID), uniq % (GRID * GRID)
    counts = np.bincount(frame, minlength=b)
    slot = np.arange(len(uniq)) - (np.cumsum(counts) - counts)[frame]  # rank of the pixel in its frame
    w = np.zeros((b, counts.max()), dtype=np.float32)  # frames padded with zero weights
    ys, xs = np.zeros(w.shape, dtype=np.int64), np.zeros(w.shape, dtype=np.int64)
    w[frame, slot], ys[frame, slot], xs[frame, slot] = weight, pixel // GRID, pixel % GRID
    np.matmul(gy[ys].transpose(0, 2, 1) * w[:, None, :], gx[xs], out=maps)  # a Gaussian per pixel, all frames at once
    top = np.argsort(-w, axis=1, kind="stable")[:, :k]
    kept = np.arange(top.shape[1])[None] < counts[:, None]
    fr = np.arange(b)[:, None]
    wmax = np.maximum(w.max(1, keepdims=True), 1e-30)
    peaks[:, : top.shape[1], 0] = np.where(kept, grid_to_screen(xs[fr, top], "x"), -1.0)
    peaks[:, : top.shape[1], 1] = np.where(kept, grid_to_screen(ys[fr, top], "y"), -1.0)
    peaks[:, : top.shape[1], 2] = np.where(kept, w[fr, top] / wmax, 0.0)
    return maps, peaks


def _pooled_maps(net: nn.Module, obs: np.ndarray, instead: str) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """A GMP student's conv activations on ``obs``, its global max pool [B,C] and where each max
    sits (flat index on the last map); an agent without the pool is told to use method ``instead``."""
    if not isinstance(net, GMPStudent):
        raise UserError(f"this agent has no global max pool: use {arg_name('method')} {instead}")
    with torch.no_grad():
        acts = conv_activations(net.conv, to_device(obs, model_device(net)))
    val, idx = acts[-1].flatten(2).max(2)
    return acts, val, idx


def gmp_attention(
    net: nn.Module, obs: np.ndarray, actions: np.ndarray | None = None, k: int = 5, refine: bool = True
) -> Attention:
    """GMP attention for a uint8 [B,4,84,84] batch; explains ``actions`` or the greedy ones.

    Each channel's max and its contribution come from the same forward pass that gives the
    action. ``refine``: trace each max to the input pixel it rests on (``winner_path``);
    otherwise place it at the centre of its cell's receptive field (the cells of the last map,
    7x7 for the teacher's geometry; method gmp-cell)."""
    acts, val, idx = _pooled_maps(net, obs, "gradcam")
    maps = acts[-1]
    if isinstance(net.hidden, nn.Identity):
        with torch.no_grad():
            out = net.head(val)
        act = _explained_actions(out, actions)
        weight = net.head.weight.detach()[act]  # [B,C]
    else:
        pooled = val.clone().requires_grad_(True)
        out = net.head(net.hidden(pooled))
        act = _explained_actions(out.detach(), actions)
        (grad,) = torch.autograd.grad(out.gather(1, act[:, None]).sum(), pooled)
        weight = grad
    rows, cols, contrib = _cells_from_pool(val, idx, maps.shape[-1], weight)
    if refine:
        smaps, peaks = path_attention(net, acts, obs, contrib, rows, cols, k)
    else:
        smaps, peaks = gmp_attention_from_cells(net, rows, cols, contrib, k, cells=maps.shape[-1])
    return Attention(smaps, peaks, act.cpu().numpy())


def gmp_occlusion_attention(
    net: nn.Module, obs: np.ndarray, actions: np.ndarray | None = None, k: int = 5, radius: float = OCCLUSION_RADIUS
) -> Attention:
    """GMP proposes, occlusion weighs: each channel's max is traced to its input pixel (as method
    gmp), a disc of ``radius`` 84-grid px around it is blurred in all 4 stacked frames, and the
    channel's Gaussian gets the drop of the explained action's probability (softmax of the outputs;
    a channel whose deletion does not lower it is left out). One forward pass per channel: C + 1
    passes per frame, against (84/5)^2 for perturbation saliency."""
    acts, val, idx = _pooled_maps(net, obs, "perturbation")
    with torch.no_grad():
        out = net.from_maps(acts[-1])
    act = _explained_actions(out, actions)
    b, c = val.shape
    frames, channels = np.repeat(np.arange(b), c), np.tile(np.arange(c), b)
    width = acts[-1].shape[-1]
    rows, cols = (idx // width).cpu().numpy(), (idx % width).cpu().numpy()
    py, px = winner_path(conv_layers(net), [a.cpu().numpy() for a in acts], obs, frames, channels,
                         rows[frames, channels], cols[frames, channels])
    traced = py.reshape(b, c), px.reshape(b, c)
    drop = _deletion_drops(net, obs, act, out, *traced, radius)
    smaps, peaks = path_attention(net, acts, obs, drop, rows, cols, k, traced)
    return Attention(smaps, peaks, act.cpu().numpy())


def _deletion_drops(net: nn.Module, obs: np.ndarray, act: torch.Tensor, out: torch.Tensor, py: np.ndarray,
                    px: np.ndarray, radius: float) -> np.ndarray:
    """[B,C]: how much the probability of ``act`` (from ``out``, the outputs on the unchanged frames)
    falls when the disc of ``radius`` around each channel's traced pixel (``py``, ``px``: [B,C]) is
    blurred away, one channel at a time."""
    device = model_device(net)
    raw, soft = to_device(obs, device).float(), to_device(blurred(obs), device)
    yy, xx = np.mgrid[0:GRID, 0:GRID]
    rows = torch.arange(len(obs), device=device)
    drop = np.zeros(py.shape, dtype=np.float32)
    with torch.no_grad():
        p0 = torch.softmax(out, 1)[rows, act]
        for ch in range(py.shape[1]):
            disc = (yy[None] - py[:, ch, None, None]) ** 2 + (xx[None] - px[:, ch, None, None]) ** 2 <= radius**2
            mask = to_device(disc[:, None].astype(np.float32), device)
            p = torch.softmax(net(raw + (soft - raw) * mask), 1)[rows, act]
            drop[:, ch] = (p0 - p).clamp(min=0).cpu().numpy()
    return drop


def gradcam_attention(net: nn.Module, obs: np.ndarray, actions: np.ndarray | None = None, k: int = 5) -> Attention:
    """Grad-CAM (Selvaraju et al. 2017) on the last conv layer, for any of our networks."""
    x = to_device(obs, model_device(net))
    maps = net.conv_maps(x).detach().requires_grad_(True)
    out = net.from_maps(maps)
    act = _explained_actions(out.detach(), actions)
    (grad,) = torch.autograd.grad(out.gather(1, act[:, None]).sum(), maps)
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * maps).sum(1)).detach().cpu().numpy()  # [B,7,7]
    smaps, peaks = cell_grid_attention(net, cam, k)
    return Attention(smaps, peaks, act.cpu().numpy())


@lru_cache(maxsize=4)
def _perturbation_masks(stride: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """The mask centres along one axis and the Gaussian masks [P,1,84,84] of perturbation
    saliency, one centred every ``stride`` px; built once per (stride, radius), so that the
    baseline pays only for its forwards and blends."""
    centres = np.arange(0, GRID, stride, dtype=np.float32)
    yy, xx = np.mgrid[0:GRID, 0:GRID].astype(np.float32)
    masks = np.stack([_gaussian((xx - cx) ** 2 + (yy - cy) ** 2, radius) for cy in centres for cx in centres])
    return centres, masks[:, None]


def perturbation_attention(
    net: nn.Module, obs: np.ndarray, actions: np.ndarray | None = None, k: int = 5, stride: int = 5, radius: float = 5.0
) -> Attention:
    """Perturbation saliency (Greydanus et al. 2018): blur a Gaussian patch (sigma ``radius``)
    centred every ``stride`` pixels of the 84x84 input, in all 4 stacked frames, and score
    0.5 * ||f(I) - f(I_perturbed)||^2 of the network's outputs, the perturbed frames kept in
    float (not rounded to uint8). Costs (84/stride)^2 forwards, batched per frame.
    ``actions`` only labels the result (the score uses all outputs, as in the paper)."""
    device = model_device(net)
    x = to_device(obs, device).float()
    b = x.shape[0]
    centres, masks = _perturbation_masks(stride, radius)  # [P,1,84,84]
    masks_t = to_device(masks, device)
    soft = to_device(blurred(obs), device)
    g = len(centres)
    smaps, peaks = _empty_attention(b, k)
    acts = np.zeros(b, dtype=np.int64)
    with torch.no_grad():
        for i in range(b):
            base = net(to_device(obs[i : i + 1], device))
            pert = x[i : i + 1] + (soft[i : i + 1] - x[i : i + 1]) * masks_t  # [P,4,84,84]
            out = net(pert)  # our networks take float pixels in [0, 255] as well as uint8
            score = (0.5 * ((out - base) ** 2).sum(1)).cpu().numpy().reshape(g, g)
            score[score < 1e-12] = 0.0  # float32 noise of batched vs single forwards, not a change
            acts[i] = int(base.argmax(1)) if actions is None else int(actions[i])
            grid = cv2.resize(score.astype(np.float32), (GRID, GRID), interpolation=cv2.INTER_LINEAR)
            smaps[i] = to_screen(grid)
            flat = score.ravel()
            if flat.max() > 0:
                for j, o in enumerate(np.argsort(-flat)[:k]):
                    cy, cx = centres[o // g], centres[o % g]
                    peaks[i, j] = (grid_to_screen(cx, "x"), grid_to_screen(cy, "y"), flat[o] / flat.max())
    return Attention(smaps, peaks, acts)


def attention(method: str, net: nn.Module, obs: np.ndarray, actions: np.ndarray | None = None, k: int = 5) -> Attention:
    """Dispatch on ``method`` (gmp | gmp-cell | gmp-occlusion | gradcam | perturbation)."""
    if method in ("gmp", "gmp-cell"):
        return gmp_attention(net, obs, actions, k, refine=method == "gmp")
    if method == "gmp-occlusion":
        return gmp_occlusion_attention(net, obs, actions, k)
    if method == "gradcam":
        return gradcam_attention(net, obs, actions, k)
    if method == "perturbation":
        return perturbation_attention(net, obs, actions, k)
    raise UserError(f"unknown attention method {method!r}; choose one of {', '.join(METHODS)}")
