"""Play an Atari game with an exported rl-compress model using only ONNX Runtime and gymnasium
(no torch, no rl-compress), and draw where the agent looks when the model carries its attention.

    rl-compress export agents/pong/gmp15-w5-0.3pct-tuned --format onnx --quantize int8 \\
        --with-attention --out pong-int8.onnx
    python examples/play_onnx.py pong-int8.onnx --game Pong --video pong.mp4

The observation pipeline is the one the agents were trained and evaluated with, built from
gymnasium's own wrappers: ALE v5 with sticky actions 0.25, up to 30 no-op starts, 4 frames skipped
with the last two max-pooled, 84x84 grey by area resize, 4 frames stacked (zeros at reset), a whole
game per episode, epsilon 0.001. The model takes uint8 [B,4,84,84]; its first output is one value
per action (argmax = the action); a model exported ``--with-attention`` also gives ``peaks``
[B,K,3] (x, y, weight) in the 210x160 screen's pixels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ale_py
import cv2
import gymnasium as gym
import numpy as np
import onnxruntime as ort
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

EPSILON = 0.001
SCALE = 3  # video pixels per screen pixel


def make_env(game: str) -> gym.Env:
    """The evaluation pipeline of rl-compress with gymnasium's wrappers: uint8 [4,84,84] observations."""
    gym.register_envs(ale_py)
    env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.25, full_action_space=False,
                   max_num_frames_per_episode=108_000)
    env = AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True, scale_obs=False)
    return FrameStackObservation(env, 4, padding_type="zero")


def draw_peaks(screen: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """The RGB screen enlarged SCALE times, a circle on each present peak (radius by weight)."""
    img = cv2.resize(screen, (screen.shape[1] * SCALE, screen.shape[0] * SCALE), interpolation=cv2.INTER_NEAREST)
    for x, y, w in peaks:
        if w > 0:
            centre = (int(round((x + 0.5) * SCALE)), int(round((y + 0.5) * SCALE)))
            cv2.circle(img, centre, int(4 + 10 * w), (255, 40, 40), 2)
    return img


def play(session: ort.InferenceSession, game: str, seed: int, max_steps: int) -> tuple[float, int, list[np.ndarray]]:
    """One game (at most ``max_steps`` agent steps): its score, its steps, and the screens with the
    attention peaks drawn when the model outputs them."""
    outputs = [o.name for o in session.get_outputs()]
    env, rng = make_env(game), np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    score, steps, frames, done = 0.0, 0, [], False
    while not done and steps < max_steps:
        result = dict(zip(outputs, session.run(None, {"obs": np.asarray(obs, dtype=np.uint8)[None]})))
        action = int(result[outputs[0]][0].argmax())
        if rng.random() < EPSILON:
            action = int(rng.integers(env.action_space.n))
        if "peaks" in result:
            frames.append(draw_peaks(env.unwrapped.ale.getScreenRGB(), result["peaks"][0]))
        obs, reward, term, trunc, _ = env.step(action)
        score, steps, done = score + float(reward), steps + 1, term or trunc
    env.close()
    return score, steps, frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an ONNX file written by `rl-compress export`")
    parser.add_argument("--game", default="Pong", help="ALE game name, as in ALE/<Game>-v5 (default: Pong)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=27_000, help="agent steps at most (default: a whole game)")
    parser.add_argument("--video", default=None, help="write the screens with the attention peaks to this .mp4")
    args = parser.parse_args(argv)
    if not Path(args.model).is_file():
        print(f"error: {args.model}: no such file", file=sys.stderr)
        return 2
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    score, steps, frames = play(session, args.game, args.seed, args.max_steps)
    print(f"{args.game}: score {score:.0f} in {steps} agent steps")
    if args.video:
        if not frames:
            print("error: this model has no attention outputs: export it with --with-attention", file=sys.stderr)
            return 2
        import imageio.v2 as imageio  # only for the video

        imageio.mimwrite(args.video, frames, fps=15, macro_block_size=1)
        print(f"{args.video}: {len(frames)} frames with the attention peaks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
