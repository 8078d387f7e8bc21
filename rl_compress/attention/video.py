"""Overlay rendering (heat map blended on the RGB screen, peak markers, a HUD) and video files.

mp4 is H.264 through imageio-ffmpeg's bundled ffmpeg (browsers play it; OpenCV's wheel
cannot encode H.264); ``.gif`` goes through imageio's pillow plugin. Files are written to
a temp name in the same folder and renamed when complete.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import imageio.v2 as imageio
import numpy as np

from rl_compress.core.errors import StorageError, UserError, first_line
from rl_compress.core.files import atomic_write_bytes

VIDEO_EXTS = (".mp4", ".gif")
HUD_H = 14  # HUD bar height in screen pixels (before scaling)


def heat(map_: np.ndarray) -> np.ndarray:
    """A map >= 0 as an RGB heat image (JET colormap), normalised to its own max."""
    m = map_ / map_.max() if map_.max() > 0 else map_
    bgr = cv2.applyColorMap((m * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def render_overlay(
    frame: np.ndarray,
    map_: np.ndarray | None,
    peaks: np.ndarray | None,
    hud: str = "",
    scale: int = 3,
    alpha: float = 0.55,
) -> np.ndarray:
    """The screen scaled by ``scale`` with the map blended where it is strong, peaks circled
    (radius by weight), and a HUD line above. Returns uint8 [(210+HUD)*s, 160*s, 3]."""
    img = frame.astype(np.float32)
    if map_ is not None and map_.max() > 0:
        w = (map_ / map_.max())[..., None] * alpha
        img = img * (1 - w) + heat(map_).astype(np.float32) * w
    img = cv2.resize(img.clip(0, 255).astype(np.uint8), (frame.shape[1] * scale, frame.shape[0] * scale),
                     interpolation=cv2.INTER_NEAREST)
    if peaks is not None:
        for x, y, wt in peaks:
            if wt > 0:
                centre = (int(round((x + 0.5) * scale)), int(round((y + 0.5) * scale)))
                cv2.circle(img, centre, int(3 * scale + 4 * scale * wt), (255, 255, 255), max(1, scale // 2),
                           lineType=cv2.LINE_AA)
    bar = np.zeros((HUD_H * scale, img.shape[1], 3), dtype=np.uint8)
    cv2.putText(bar, hud, (3 * scale, int(HUD_H * scale * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, 0.13 * scale,
                (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, img], axis=0)


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 6) -> np.ndarray:
    """Two rendered frames next to each other (same height)."""
    sep = np.full((left.shape[0], gap, 3), 40, dtype=np.uint8)
    return np.concatenate([left, sep, right], axis=1)


def check_video_path(path: Path) -> Path:
    """Refuse an output path we cannot write a video to (one line)."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_EXTS:
        raise UserError(f"{path}: video must end in {' or '.join(VIDEO_EXTS)}")
    if not path.parent.exists():
        raise UserError(f"{path.parent}: no such directory")
    return path


def write_video(path: Path, frames: Iterable[np.ndarray], fps: int = 30) -> int:
    """Write RGB frames to ``path`` (.mp4 H.264 or .gif), atomically; returns the frame count. A
    write the disk refuses raises StorageError (one line) and leaves no part file."""
    path = check_video_path(path)
    if path.suffix.lower() == ".gif":  # imageio's pillow writer holds every frame until it closes anyway
        gif = io.BytesIO()
        n = _append_all(imageio.get_writer(gif, format="GIF", mode="I", duration=1000 / fps, loop=0), frames, path)
        atomic_write_bytes(path, gif.getvalue())
        return n
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        # quiet: ffmpeg shares our stderr, and a stop mid-frame makes it complain about the cut frame;
        # a failed encode still raises in Python
        writer = imageio.get_writer(str(tmp), fps=fps, codec="libx264", macro_block_size=1, quality=7,
                                    pixelformat="yuv420p", ffmpeg_log_level="quiet")
        n = _append_all(writer, frames, path)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        reason = e.strerror if e.errno not in (None, errno.EPIPE) else "the encoder stopped; is the disk full?"
        raise StorageError(f"{path}: could not write ({reason or first_line(e)})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def _append_all(writer: Any, frames: Iterable[np.ndarray], path: Path) -> int:
    """Feed ``frames`` to an imageio writer and close it; the count (UserError for none)."""
    n = 0
    with writer:
        for f in frames:
            writer.append_data(f)
            n += 1
    if n == 0:
        raise UserError(f"{path}: no frames to write")
    return n


def encode_gif(frames: list[np.ndarray], fps: int = 15) -> bytes:
    """Animated GIF bytes of RGB frames (what TensorBoard shows as a video)."""


    buf = io.BytesIO()
    imageio.mimwrite(buf, frames, format="GIF", duration=1000 / fps, loop=0)
    return buf.getvalue()


def tb_add_clip(writer, tag: str, frames: list[np.ndarray], step: int, fps: int = 15) -> None:
    """Add an animated clip to a TensorBoard SummaryWriter as an encoded GIF image summary
    (the format ``add_video`` writes, without its moviepy dependency)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    h, w = frames[0].shape[:2]
    image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=encode_gif(frames, fps))
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
