"""Can the GMP map be made more faithful (lower deletion AUC) without touching the student?

On the 100 frames each student plays (seed 0, as `bench localization --frames 100`), deletion and
insertion areas of the GMP map with:
  weights plain    - each pooled channel weighted by the chosen action's head weight x activation (the map);
  weights contrast - by (that weight - the mean over actions) x activation, the channel's pull on the
                     action's advantage over the others;
  weights runnerup - by (that weight - the runner-up action's) x activation;
  tested R         - method gmp-occlusion: every channel's max traced to its input pixel, that
                     pixel's disc of radius R (84-grid px) blurred as the metric blurs, and the
                     channel weighted by how much the chosen action's probability drops;
  sigma x S        - the plain map with the Gaussian around each traced pixel S times as wide.

Usage: python experiments/pilots/gmp_map_variants.py AGENT [AGENT...]
"""

from __future__ import annotations

import argparse
import time

import torch

from rl_compress.attention import faithfulness as F
from rl_compress.attention.benchmark import played_frames
from rl_compress.core.device import model_device, to_device
from rl_compress.models import maps as M
from rl_compress.models.agent import load_agent
from rl_compress.models.networks import conv_activations


def weighted_map(net, obs, actions, mode: str):
    x = to_device(obs, model_device(net))
    with torch.no_grad():
        acts = conv_activations(net.conv, x)
        val, idx = acts[-1].flatten(2).max(2)
        q = net.head(val)
    w, act = net.head.weight.detach(), torch.as_tensor(actions)
    if mode == "plain":
        weight = w[act]
    elif mode == "contrast":
        weight = w[act] - w.mean(0, keepdim=True)
    else:
        q[torch.arange(len(q)), act] = -1e9
        weight = w[act] - w[q.argmax(1)]
    rows, cols, contrib = M._cells_from_pool(val, idx, acts[-1].shape[-1], weight)
    smaps, _ = M.path_attention(net, acts, obs, contrib, rows, cols, 5)
    return F.normalised(F._screen_to_grid(smaps))


def tested_map(net, obs, actions, radius: float):
    """Method gmp-occlusion with a disc of ``radius`` blurred around each traced pixel."""
    return F.normalised(F._screen_to_grid(M.gmp_occlusion_attention(net, obs, actions, radius=radius).maps))


def sigma_map(agent, played, scale: float):
    """The plain GMP map with each traced pixel's Gaussian ``scale`` times as wide."""
    gaussians = M._screen_gaussians
    M._screen_gaussians = lambda s: gaussians(s * scale)
    try:
        return F.grid_maps("gmp", agent.net, played.obs, played.actions)
    finally:
        M._screen_gaussians = gaussians


def main(paths: list[str]) -> None:
    torch.set_num_threads(1)
    for path in paths:
        agent = load_agent(path)
        played = played_frames(agent, 100, 0)
        variants = [(f"weights {m}", weighted_map(agent.net, played.obs, played.actions, m))
                    for m in ("plain", "contrast", "runnerup")]
        variants += [(f"sigma x {scale}", sigma_map(agent, played, scale)) for scale in (0.25, 0.5, 2.0)]
        for radius in (3, 5, 8):
            start = time.perf_counter()
            maps = tested_map(agent.net, played.obs, played.actions, radius)
            ms = 1000 * (time.perf_counter() - start) / len(maps)
            variants.append((f"tested {radius} ({ms:.1f} ms/frame)", maps))
        for name, maps in variants:
            d = F.deletion_insertion(agent.net, played.obs, maps, played.actions)
            print(f"{path} {name}: deletion {d['deletion_auc']:.3f} insertion {d['insertion_auc']:.3f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Deletion / insertion of GMP map variants on the frames each agent plays.")
    parser.add_argument("agents", nargs="+", help="gmp student directories")
    main(parser.parse_args().agents)
