"""GMP attention inside an exported graph: a gmp student's Q-values / logits, its attention map
over the 210x160 screen and its top-K peaks, from one forward pass with no code beside the model.

Method ``gmp-cell`` (the default): for the chosen action, each channel's max adds head weight x
max (>= 0) to the cell of the last conv map it sits on; the map is one Gaussian per cell (sigma =
receptive field / 6, separable), resized bilinearly to the screen; the peaks are the K heaviest
cells at their receptive fields' centres.

Method ``gmp`` (as ``models/maps.py`` computes it): for the chosen action, each channel's max
(weight head x max >= 0) is traced down the convolutions to the input pixel it rests on (the
window position holding most of the positive contributions at every layer, ``maps.winner_path``);
the map is one separable Gaussian per traced pixel on the screen (sigma half the first kernel); the
peaks are the K heaviest pixels in screen coordinates (channels that end on one pixel add up),
weight relative to the heaviest, absent peaks (-1, -1, 0). Only students whose pool feeds the head
directly (no hidden layer) are exported so.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rl_compress.core.errors import UserError, arg_name
from rl_compress.models.maps import GRID, SCREEN_H, SCREEN_W, _centres, _gaussian, grid_to_screen
from rl_compress.models.networks import GMPStudent, conv_activations, conv_layers, receptive_field

OUTPUT_NAMES = ("out", "attention", "peaks")
GRAPH_METHODS = ("gmp-cell", "gmp")


def attention_method(with_attention: bool | str) -> str:
    """The method an export's ``with_attention`` names: True is gmp-cell; a string names gmp-cell
    or gmp (one UserError line otherwise)."""
    method = "gmp-cell" if with_attention is True else with_attention
    if method not in GRAPH_METHODS:
        raise UserError(f"{arg_name('with_attention')} takes {', '.join(GRAPH_METHODS)}, got {with_attention!r}")
    return method


def check_attention_export(net: nn.Module) -> GMPStudent:
    """``net`` if its attention can go into the graph; one UserError line otherwise."""
    if not isinstance(net, GMPStudent):
        raise UserError(f"{arg_name('with_attention')} needs a student with a global max pool (gmp); "
                        "this agent has none")
    if not isinstance(net.hidden, nn.Identity):
        raise UserError(f"{arg_name('with_attention')} needs a gmp student whose pool feeds the head directly "
                        "(no -h hidden layer)")
    return net


class WithAttention(nn.Module):
    """``net`` with two more outputs: ``attention`` float32 [B,210,160] and ``peaks`` float32
    [B,K,3] (x right, y down, weight) in screen pixels, as ``Agent.attention(obs, method, k)``
    gives them for ``method`` gmp-cell (the cells of the last map: small, the default) or gmp (each
    max traced to its input pixel: sharper, a larger file)."""

    def __init__(self, net: nn.Module, k: int = 5, method: str = "gmp-cell") -> None:
        super().__init__()
        self.net = check_attention_export(net)
        self.k, self.method = k, attention_method(method)
        self.convs = conv_layers(net)
        self.sigma = self.convs[0].kernel_size[0] / 2.0  # in 84-grid pixels, as maps.path_attention
        if self.method == "gmp":
            if any(c.padding[0] != 0 or c.dilation[0] != 1 for c in self.convs):
                raise UserError("GMP attention traces convolutions without padding or dilation only")
            return
        with torch.no_grad():
            self.cells = int(net.conv_maps(torch.zeros(1, 4, GRID, GRID, dtype=torch.uint8)).shape[-1])
        size, stride, offset = receptive_field(net)
        centres = _centres(size, stride, offset, self.cells)
        d2 = (np.arange(GRID)[None, :] - centres[:, None]) ** 2  # [cells, 84]
        self.register_buffer("gauss", torch.from_numpy(_gaussian(d2, size / 6.0)))
        self.register_buffer("screen_x", torch.from_numpy(grid_to_screen(centres, "x").astype(np.float32)))
        self.register_buffer("screen_y", torch.from_numpy(grid_to_screen(centres, "y").astype(np.float32)))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(outputs [B,A], attention [B,210,160], peaks [B,K,3]) for a uint8 [B,4,84,84] batch."""
        acts = conv_activations(self.net.conv, obs) if self.method == "gmp" else [self.net.conv_maps(obs)]
        val, idx = acts[-1].flatten(2).max(2)  # the pool, and where each channel's max sits
        out = self.net.head(val)
        weight = self.net.head.weight[out.argmax(1)]  # [B,C]: the chosen action's head row
        contrib = torch.relu(weight * val)
        if self.method == "gmp-cell":
            return (out, *self._cells(idx, contrib))
        width = acts[-1].shape[-1]
        py, px = self._trace(obs.float(), acts, idx // width, idx % width)
        gy = _gaussians(py, SCREEN_H, self.sigma) * contrib[..., None]  # [B,C,210]
        screen = gy.transpose(1, 2) @ _gaussians(px, SCREEN_W, self.sigma)  # a Gaussian per traced pixel
        return out, screen, self._pixel_peaks(py * GRID + px, contrib)

    def _cells(self, idx: torch.Tensor, contrib: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Method gmp-cell: the map (a Gaussian per cell of the last map, resized to the screen) and
        the K heaviest cells at their receptive fields' centres."""
        cells = torch.arange(self.cells * self.cells, device=idx.device)
        grid = ((idx[..., None] == cells).to(contrib.dtype) * contrib[..., None]).sum(1)  # [B,cells^2]
        g = grid.view(-1, self.cells, self.cells)
        map84 = self.gauss.t() @ g @ self.gauss  # one separable Gaussian per cell, [B,84,84]
        screen = torch.relu(F.interpolate(map84[:, None], size=(SCREEN_H, SCREEN_W), mode="bilinear",
                                          align_corners=False))[:, 0]
        val, cell = grid.topk(min(self.k, self.cells * self.cells), dim=1)
        return screen, self._peaks(val, self.screen_x[cell % self.cells], self.screen_y[cell // self.cells])

    def _trace(self, obs: torch.Tensor, acts: list[torch.Tensor], rows: torch.Tensor,
               cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each channel's max [B,C] traced to an input pixel (row, col) on the 84x84 grid, as
        ``maps.winner_path``: at every layer the window position that holds the most of the
        positive contributions (weight x activation) carries the path on."""
        b, c = rows.shape
        relevance = torch.eye(c, device=obs.device).expand(b, c, c)  # [B, path, channel]
        for layer in range(len(self.convs) - 1, -1, -1):
            conv = self.convs[layer]
            k, s = conv.kernel_size[0], conv.stride[0]
            inp = acts[layer - 1] if layer > 0 else obs
            cin, h, w = inp.shape[1], inp.shape[2], inp.shape[3]
            off = torch.arange(k, device=obs.device)
            pos = ((s * rows)[..., None, None] + off[:, None]) * w + (s * cols)[..., None, None] + off  # [B,C,k,k]
            base = (torch.arange(b, device=obs.device)[:, None] * cin + torch.arange(cin, device=obs.device)) * (h * w)
            flat = base[:, None, :, None] + pos.reshape(b, c, 1, k * k)  # [B,C,Cin,k*k]
            window = inp.reshape(-1)[flat].reshape(b, c, cin * k * k)
            wpos = torch.relu(conv.weight.reshape(conv.out_channels, -1))  # inputs >= 0: max(w x, 0) = max(w, 0) x
            share = relevance / (window @ wpos.t() + 1e-12)  # [B,C,Cout]
            spread = (window * (share @ wpos)).reshape(b, c, cin, k * k)
            best = spread.sum(2).argmax(-1)  # [B,C]
            rows, cols = s * rows + best // k, s * cols + best % k
            relevance = spread.gather(3, best[:, :, None, None].expand(b, c, cin, 1))[..., 0]
        return rows, cols

    def _pixel_peaks(self, pixel: torch.Tensor, contrib: torch.Tensor) -> torch.Tensor:
        """Method gmp: the K heaviest traced pixels, channels that end on the same pixel added up."""
        live = contrib > 0
        same = (pixel[:, :, None] == pixel[:, None, :]) & live[:, None, :]  # [B,C,C]
        total = (same.to(contrib.dtype) * contrib[:, None, :]).sum(2)
        earlier = torch.ones_like(same[0]).tril(-1)  # [C,C]: c' < c
        first = live & ~(same & earlier).any(2)  # one entry per pixel: its first live channel
        val, pick = torch.where(first, total, torch.zeros_like(total)).topk(min(self.k, pixel.shape[1]), dim=1)
        chosen = pixel.gather(1, pick)
        return self._peaks(val, _to_screen(chosen % GRID, SCREEN_W), _to_screen(chosen // GRID, SCREEN_H))

    def _peaks(self, val: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Peaks [B,K,3] (x, y, weight / heaviest) from the top weights ``val`` [B,k] (k <= K) and
        their screen coordinates; absent ones (weight 0, or past k) are (-1, -1, 0)."""
        present = val > 0
        absent = torch.full_like(val, -1.0)
        w = torch.where(present, val / val[:, :1].clamp_min(1e-30), torch.zeros_like(val))
        peaks = torch.stack([torch.where(present, x, absent), torch.where(present, y, absent), w], dim=-1)
        if val.shape[1] < self.k:  # fewer candidates than peaks asked: the rest are absent
            pad = torch.tensor([-1.0, -1.0, 0.0], device=val.device).expand(val.shape[0], self.k - val.shape[1], 3)
            peaks = torch.cat([peaks, pad], dim=1)
        return peaks

def _to_screen(grid: torch.Tensor, size: int) -> torch.Tensor:
    """84-grid pixel coordinates to screen pixels along an axis of ``size`` (``maps.grid_to_screen``)."""
    return (grid.to(torch.float32) + 0.5) * (size / GRID) - 0.5


def _gaussians(grid: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """One Gaussian (sigma in 84-grid pixels) per traced coordinate [B,C] over the ``size`` screen
    pixels of its axis, [B,C,size]; values under 1e-12 are 0 (``maps._gaussian``). Computed in the
    graph, so the file holds no [84, size] table."""
    d = torch.arange(size, dtype=torch.float32, device=grid.device) - _to_screen(grid, size)[..., None]
    scaled = sigma * size / GRID
    g = torch.exp(-(d * d) / (2.0 * scaled * scaled))
    return torch.where(g < 1e-12, torch.zeros_like(g), g)
