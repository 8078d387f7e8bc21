"""GMP attention inside an exported graph: a gmp student's Q-values / logits, its attention map
over the 210x160 screen and its top-K peaks, from one forward pass with no code beside the model.

The graph computes method ``gmp-cell`` of ``models/maps.py``: for the chosen action, each
channel's max adds head weight x max (>= 0) to the cell of the last conv map it sits on; the map
is one Gaussian per cell (sigma = receptive field / 6, separable, so two small matrices instead of
a [cells, 84*84] one), resized bilinearly to the screen; the peaks are the K heaviest cells at
their receptive fields' centres in screen pixels, weight relative to the heaviest, absent peaks
(-1, -1, 0). Only students whose pool feeds the head directly (no hidden layer) are exported so.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rl_compress.core.errors import UserError, arg_name
from rl_compress.models.maps import GRID, SCREEN_H, SCREEN_W, _centres, _gaussian, grid_to_screen
from rl_compress.models.networks import GMPStudent, receptive_field

OUTPUT_NAMES = ("out", "attention", "peaks")


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
    [B,K,3] (x right, y down, weight) in screen pixels, as ``Agent.attention(obs, "gmp-cell", k)``."""

    def __init__(self, net: nn.Module, k: int = 5) -> None:
        super().__init__()
        self.net = check_attention_export(net)
        with torch.no_grad():
            self.cells = int(net.conv_maps(torch.zeros(1, 4, GRID, GRID, dtype=torch.uint8)).shape[-1])
        self.k = k
        size, stride, offset = receptive_field(net)
        centres = _centres(size, stride, offset, self.cells)
        d2 = (np.arange(GRID)[None, :] - centres[:, None]) ** 2  # [cells, 84]
        self.register_buffer("gauss", torch.from_numpy(_gaussian(d2, size / 6.0)))
        self.register_buffer("screen_x", torch.from_numpy(grid_to_screen(centres, "x").astype(np.float32)))
        self.register_buffer("screen_y", torch.from_numpy(grid_to_screen(centres, "y").astype(np.float32)))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(outputs [B,A], attention [B,210,160], peaks [B,K,3]) for a uint8 [B,4,84,84] batch."""
        maps = self.net.conv_maps(obs)
        val, idx = maps.flatten(2).max(2)  # the pool, and where each channel's max sits
        out = self.net.head(val)
        weight = self.net.head.weight[out.argmax(1)]  # [B,C]: the chosen action's head row
        contrib = torch.relu(weight * val)
        cells = torch.arange(self.cells * self.cells, device=obs.device)
        grid = ((idx[..., None] == cells).to(contrib.dtype) * contrib[..., None]).sum(1)  # [B,cells^2]
        g = grid.view(-1, self.cells, self.cells)
        map84 = self.gauss.t() @ g @ self.gauss  # one separable Gaussian per cell, [B,84,84]
        screen = torch.relu(F.interpolate(map84[:, None], size=(SCREEN_H, SCREEN_W), mode="bilinear",
                                          align_corners=False))[:, 0]
        return out, screen, self._peaks(grid)

    def _peaks(self, grid: torch.Tensor) -> torch.Tensor:
        """The K heaviest cells [B,K,3] (x, y, weight / heaviest); absent ones (-1, -1, 0)."""
        k = min(self.k, self.cells * self.cells)
        val, cell = grid.topk(k, dim=1)
        present = val > 0
        absent = torch.full_like(val, -1.0)
        x = torch.where(present, self.screen_x[cell % self.cells], absent)
        y = torch.where(present, self.screen_y[cell // self.cells], absent)
        w = torch.where(present, val / val[:, :1].clamp_min(1e-30), torch.zeros_like(val))
        peaks = torch.stack([x, y, w], dim=-1)
        if k < self.k:  # fewer cells than peaks asked: the rest are absent
            pad = torch.tensor([-1.0, -1.0, 0.0], device=grid.device).expand(grid.shape[0], self.k - k, 3)
            peaks = torch.cat([peaks, pad], dim=1)
        return peaks
