"""Does a training term make GMP's map more faithful? Fine-tune a GMP student against its teacher
(actor-mimic, Adam) with or without a term that asks it to act the same when everything but the
top share of its own GMP map is blurred away ("act from what you point at"), then measure deletion
and insertion AUC of the GMP map on the 100 frames the student plays (seed 0, as `bench
localization --frames 100`), agreement with the teacher on them and the score over 30 games.

Usage: python experiments/pilots/insertion_term_finetune.py STUDENT OUT --term insert --weight 1
       python experiments/pilots/insertion_term_finetune.py STUDENT OUT --term none   (the control)
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import rl_compress as rlc
from rl_compress.atari.envs import played_observations
from rl_compress.attention import faithfulness as F
from rl_compress.attention.benchmark import played_frames
from rl_compress.models.agent import load_agent
from rl_compress.models.maps import GRID, attention
from rl_compress.train.distill import distill_loss

TAU = 0.01  # actor-mimic's temperature for Q-value teachers


def kept_top(net: torch.nn.Module, states: np.ndarray, soft: np.ndarray, actions: np.ndarray, share: float) -> np.ndarray:
    """``states`` with every pixel outside the top ``share`` of the GMP map (for ``actions``) blurred."""
    maps = F.normalised(F._screen_to_grid(attention("gmp", net, states, actions).maps))
    top = np.argsort(-maps.reshape(len(states), -1), axis=1)[:, : round(share * GRID * GRID)]
    mask = np.zeros((len(states), GRID * GRID), bool)
    np.put_along_axis(mask, top, True, axis=1)
    return np.where(mask.reshape(len(states), 1, GRID, GRID), states.astype(np.float32), soft)


def finetune(student, teacher, term: str, weight: float, updates: int, states_n: int, share: float) -> None:
    """Adam on teacher-labelled states the student plays, with the insertion term when asked."""
    net, tnet = student.net.train(), teacher.net.eval()
    with torch.no_grad():
        states = played_observations(student.game, states_n, lambda o: net(torch.as_tensor(o)).argmax(1).numpy(),
                                     seed=123, epsilon=0.05)
        q_t = torch.cat([tnet(torch.as_tensor(states[i:i + 500])) for i in range(0, len(states), 500)])
    soft = F.blurred(states)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    t0 = time.time()
    for it in range(updates):
        idx = np.random.default_rng(it).integers(0, len(states), 64)
        loss = distill_loss(net(torch.as_tensor(states[idx])), q_t[idx], "actor-mimic", TAU)
        extra = torch.zeros(())
        if term == "insert":
            inside = kept_top(net, states[idx], soft[idx], q_t[idx].argmax(1).numpy(), share)
            extra = distill_loss(net(torch.as_tensor(inside)), q_t[idx], "actor-mimic", TAU)
        opt.zero_grad()
        (loss + weight * extra).backward()
        opt.step()
        if it % 250 == 0:
            print(f"{it} loss {float(loss):.4f} term {float(extra):.4f} {time.time() - t0:.0f}s", flush=True)
    net.eval()


def main(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    student = load_agent(Path(args.student))
    teacher = load_agent(Path(json.loads(Path(args.student, "agent.json").read_text())["teacher"]["path"]))
    finetune(student, teacher, args.term, args.weight, args.updates, args.states, args.share)
    out = Path(args.out)
    shutil.copytree(args.student, out, dirs_exist_ok=False)
    save_file({k: v.contiguous() for k, v in student.net.state_dict().items()}, str(out / "model.safetensors"))
    played = played_frames(student, 100, 0)
    d = F.deletion_insertion(student.net, played.obs, F.grid_maps("gmp", student.net, played.obs, played.actions),
                             played.actions)
    with torch.no_grad():
        agree = float((teacher.net(torch.as_tensor(played.obs)).argmax(1).numpy() == played.actions).mean())
    score = rlc.evaluate(student, episodes=30, seed=0)
    print(f"{args.term} x {args.weight}: deletion {d['deletion_auc']:.3f} insertion {d['insertion_auc']:.3f} "
          f"agreement with the teacher {agree:.2f} score {score['mean']:.2f} +- {score['std']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Fine-tune a GMP student with or without the insertion term; "
                                                 "deletion / insertion AUC and score after.")
    parser.add_argument("student", help="a gmp student directory, e.g. agents/pong/gmp15-w5-15min")
    parser.add_argument("out", help="new agent directory for the fine-tuned student")
    parser.add_argument("--term", choices=["none", "insert"], default="insert")
    parser.add_argument("--weight", type=float, default=1.0, help="weight of the insertion term")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--states", type=int, default=20000, help="states the student plays (epsilon 0.05)")
    parser.add_argument("--share", type=float, default=0.1, help="share of the map's top pixels kept")
    main(parser.parse_args())
