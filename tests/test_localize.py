"""Localization: receptive-field arithmetic, screen mapping, GMP and Grad-CAM maps, the .npz
of docs/formats.md, overlay rendering and real video files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rl_compress.atari.envs import ScreenEnv, sample_observations
from rl_compress.attention.video import render_overlay, write_video
from rl_compress.bench import attention_macs, bench_localize
from rl_compress.core.errors import UserError
from rl_compress.models.agent import make_card, save_agent
from rl_compress.models.maps import (
    cell_centres,
    gmp_attention,
    gmp_attention_from_cells,
    gmp_cells,
    gradcam_attention,
    grid_to_screen,
    perturbation_attention,
)
from rl_compress.models.networks import build_network, forward_macs, parse_spec, receptive_field, teacher_arch


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("rl-compress"))
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture()
def gmp_student(tmp_path: Path) -> Path:
    torch.manual_seed(3)
    arch = parse_spec("gmp16")
    net = build_network(arch, 6)
    out = tmp_path / "gmp16"
    save_agent(out, net, make_card("student", "pong", arch, net))
    return out


def test_receptive_field_from_the_arch() -> None:
    for arch in (teacher_arch(), parse_spec("gmp16"), parse_spec("flat16-fc128")):
        assert receptive_field(build_network(arch, 6)) == (36, 8, 0)
    assert receptive_field(build_network(parse_spec("gmp16-w5"), 6)) == (36 + 8 * 4, 8, 0)
    assert receptive_field(build_network(parse_spec("gmp16-w7"), 6)) == (84, 8, 0)
    net = build_network(parse_spec("gmp8"), 6)
    assert np.allclose(cell_centres(net), 17.5 + 8 * np.arange(7))


def test_synthetic_activation_lands_on_the_right_screen_pixels() -> None:
    net = build_network(parse_spec("gmp16"), 6)
    maps = torch.zeros(1, 16, 7, 7)
    maps[0, 3, 2, 5] = 4.0  # channel 3 peaks at row 2, column 5
    maps[0, 7, 6, 0] = 9.0  # channel 7 peaks elsewhere but its weight is negative
    weight = torch.zeros(1, 16)
    weight[0, 3], weight[0, 7] = 0.5, -1.0
    rows, cols, contrib = gmp_cells(maps, weight)
    assert (rows[0, 3], cols[0, 3]) == (2, 5) and contrib[0, 3] == pytest.approx(2.0) and contrib[0, 7] == 0
    smap, peaks = gmp_attention_from_cells(net, rows, cols, contrib, k=3)
    # cell (2,5) covers 84-grid x in [40,76), y in [16,52): centre (57.5, 33.5)
    x = (57.5 + 0.5) * 160 / 84 - 0.5
    y = (33.5 + 0.5) * 210 / 84 - 0.5
    assert peaks[0, 0] == pytest.approx([x, y, 1.0], abs=1e-3)
    assert peaks[0, 1, 2] == 0 and peaks[0, 2, 2] == 0  # only one contributing cell
    assert smap.shape == (1, 210, 160) and smap.min() >= 0
    my, mx = np.unravel_index(np.argmax(smap[0]), smap[0].shape)
    assert abs(mx - x) <= 2 and abs(my - y) <= 3
    assert smap[0, 200, 10] < 1e-3 * smap[0].max()


@pytest.mark.parametrize("spec", ["gmp16", "gmp8-w5"])
def test_gmp_traces_each_max_to_the_pixel_that_caused_it(spec: str) -> None:
    """A single bright pixel and a student with positive weights: every channel's max rests on
    windows that hold the pixel, so every traced path (and the top peak) ends on that pixel,
    while the untraced method stops at a cell centre; through three convs or four."""
    torch.manual_seed(1)
    net = build_network(parse_spec(spec), 6)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.abs_()
                m.bias.zero_()
        net.head.weight.abs_()
    obs = np.zeros((2, 4, 84, 84), dtype=np.uint8)
    obs[0, :, 30, 61] = 255
    obs[1, :, 70, 9] = 255
    att = gmp_attention(net, obs, actions=np.zeros(2, dtype=np.int64), k=3)
    for i, (y, x) in enumerate([(30, 61), (70, 9)]):
        assert att.peaks[i, 0] == pytest.approx([grid_to_screen(x, "x"), grid_to_screen(y, "y"), 1.0], abs=1e-3)
        assert (att.peaks[i, 1:, 2] == 0).all()  # all paths end on the one pixel
        my, mx = np.unravel_index(np.argmax(att.maps[i]), att.maps[i].shape)
        assert abs(mx - grid_to_screen(x, "x")) <= 1 and abs(my - grid_to_screen(y, "y")) <= 1
    cell = gmp_attention(net, obs[:1], actions=np.zeros(1, dtype=np.int64), k=3, refine=False)
    side = net.conv_maps(torch.from_numpy(obs[:1])).shape[-1]  # 7, or 3 after a 5x5 fourth conv
    assert np.abs(grid_to_screen(cell_centres(net, side), "x") - cell.peaks[0, 0, 0]).min() < 1e-3
    assert np.abs(grid_to_screen(cell_centres(net, side), "y") - cell.peaks[0, 0, 1]).min() < 1e-3


def test_screen_mapping_inverts_the_real_resize() -> None:
    """A bright patch on the screen, resized like the env does, maps back to where it was."""
    frame = np.zeros((210, 160), dtype=np.uint8)
    frame[148:156, 96:104] = 255  # centre (99.5, 151.5)
    small = cv2.resize(frame, (84, 84), interpolation=cv2.INTER_AREA).astype(np.float64)
    yy, xx = np.mgrid[0:84, 0:84]
    cx, cy = (small * xx).sum() / small.sum(), (small * yy).sum() / small.sum()
    assert grid_to_screen(cx, "x") == pytest.approx(99.5, abs=0.5)
    assert grid_to_screen(cy, "y") == pytest.approx(151.5, abs=0.5)


def test_gmp_and_gradcam_on_real_frames() -> None:
    obs = sample_observations("pong", 8, num_envs=8)
    torch.manual_seed(0)
    for spec in ("gmp16", "gmp16-h64"):
        net = build_network(parse_spec(spec), 6)
        att = gmp_attention(net, obs, k=4)
        with torch.no_grad():
            greedy = net(torch.from_numpy(obs)).argmax(1).numpy()
        assert np.array_equal(att.actions, greedy)
        assert att.maps.shape == (8, 210, 160) and att.maps.dtype == np.float32 and att.maps.min() >= 0
        assert att.peaks.shape == (8, 4, 3)
        w = att.peaks[:, :, 2]
        assert (w[:, 0] == 1.0).all() or (w == 0).all()
        live = w > 0
        assert (att.peaks[:, :, 0][live] >= 0).all() and (att.peaks[:, :, 0][live] < 160).all()
        assert (att.peaks[:, :, 1][live] >= 0).all() and (att.peaks[:, :, 1][live] < 210).all()
        # a batch gives each frame what it gets alone, a blank frame (fewer pixels than peaks) included
        mixed = np.concatenate([obs[:3], np.zeros((1, 4, 84, 84), dtype=np.uint8), obs[3:]])
        whole = gmp_attention(net, mixed, k=4)
        for i in range(len(mixed)):
            alone = gmp_attention(net, mixed[i : i + 1], k=4)
            assert np.array_equal(whole.peaks[i, :, :2], alone.peaks[0, :, :2]) and whole.actions[i] == alone.actions[0]
            np.testing.assert_allclose(whole.peaks[i, :, 2], alone.peaks[0, :, 2], rtol=1e-5)  # batched convs round
            np.testing.assert_allclose(whole.maps[i], alone.maps[0], rtol=1e-5, atol=1e-6 * alone.maps.max())
    teacher = build_network(teacher_arch(), 6)
    cam = gradcam_attention(teacher, obs, actions=np.zeros(8, dtype=np.int64))
    assert cam.maps.shape == (8, 210, 160) and cam.maps.min() >= 0 and (cam.actions == 0).all()
    with pytest.raises(UserError, match="no global max pool"):
        gmp_attention(teacher, obs)
    pert = perturbation_attention(teacher, obs[:2])
    assert pert.maps.shape == (2, 210, 160) and pert.maps.min() >= 0 and pert.maps.max() > 0
    assert pert.peaks.shape == (2, 5, 3) and (pert.peaks[:, 0, 2] == 1.0).all()
    blank = perturbation_attention(teacher, np.zeros((1, 4, 84, 84), dtype=np.uint8))
    assert blank.maps.max() == 0 and (blank.peaks[:, :, 2] == 0).all()  # blurring nothing changes nothing


def test_render_overlay() -> None:
    env = ScreenEnv("pong")
    env.reset(seed=0)
    frame = env.screen()
    env.close()
    m = np.zeros((210, 160), dtype=np.float32)
    m[100:120, 50:70] = 1.0
    img = render_overlay(frame, m, np.array([[60.0, 110.0, 1.0]], dtype=np.float32), "pong | test", scale=3)
    assert img.shape == ((210 + 14) * 3, 480, 3) and img.dtype == np.uint8
    body = img[14 * 3:]
    assert not np.array_equal(body[330, 180], frame[110, 60])  # heat where the map is hot
    assert np.array_equal(body[30, 400], frame[10, 133])  # untouched where it is zero
    assert img[: 14 * 3].any()  # the HUD has text


def test_write_video_mp4_and_gif(tmp_path: Path) -> None:
    import imageio.v2 as imageio

    frames = [np.full((64, 48, 3), i * 20, dtype=np.uint8) for i in range(12)]
    assert write_video(tmp_path / "v.mp4", iter(frames), fps=10) == 12
    reader = imageio.get_reader(str(tmp_path / "v.mp4"))
    meta = reader.get_meta_data()
    got = [f for f in reader]  # noqa: C416 - list() asks len(), which is inf for an ffmpeg reader
    assert meta["codec"] == "h264" and len(got) == 12 and got[0].shape == (64, 48, 3)
    assert write_video(tmp_path / "v.gif", iter(frames), fps=10) == 12
    assert len(imageio.mimread(str(tmp_path / "v.gif"))) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.gif", "v.mp4"]
    with pytest.raises(UserError):
        write_video(tmp_path / "v.avi", iter(frames))


def test_localize_npz_and_record_cli(gmp_student: Path, random_teacher: Path, tmp_path: Path) -> None:
    import imageio.v2 as imageio

    out = tmp_path / "maps.npz"
    res = _cli("localize", str(gmp_student), "--frames", "40", "--out", str(out))
    assert res.returncode == 0, res.stderr
    data = np.load(out)
    assert sorted(data.files) == ["actions", "frames", "maps", "peaks", "ram"]
    assert data["frames"].shape == (40, 210, 160, 3) and data["frames"].dtype == np.uint8
    assert data["ram"].shape == (40, 128) and data["ram"].dtype == np.uint8
    assert data["maps"].shape == (40, 210, 160) and data["maps"].dtype == np.float32 and data["maps"].min() >= 0
    assert data["peaks"].shape == (40, 5, 3) and data["peaks"].dtype == np.float32
    assert data["actions"].shape == (40,) and data["actions"].dtype == np.int64
    assert len({data["ram"][i].tobytes() for i in range(40)}) > 30, "RAM must change as the game runs"

    video = tmp_path / "rec.mp4"
    res = _cli("record", str(gmp_student), "--out", str(video), "--max-frames", "25", "--side-by-side",
               str(random_teacher), "--quiet")
    assert res.returncode == 0, res.stderr
    reader = imageio.get_reader(str(video))
    frames = [f for f in reader]  # noqa: C416 - list() asks len(), which is inf for an ffmpeg reader
    assert len(frames) == 25 and frames[0].shape == ((210 + 14) * 3, 2 * 480 + 6, 3)

    bad = _cli("record", str(random_teacher), "--out", str(tmp_path / "t.mp4"), "--overlay", "gmp")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "no global max pool" in bad.stderr
    bad = _cli("record", str(gmp_student), "--out", str(tmp_path / "t.avi"))
    assert bad.returncode == 2 and ".mp4 or .gif" in bad.stderr
    bad = _cli("localize", str(gmp_student), "--frames", "0", "--out", str(tmp_path / "x.npz"))
    assert bad.returncode == 2 and "--frames" in bad.stderr
    assert not (tmp_path / "t.mp4").exists() and not (tmp_path / "x.npz").exists()


def test_compute_per_frame_from_the_layer_shapes() -> None:
    """MACs of a forward, by hand: the teacher's convs 20*20*32*4*64 + 9*9*64*32*16 + 7*7*64*64*9,
    its FC 3136*512 + 512*6; and the bench's count of each attention method on top of it."""
    teacher = build_network(teacher_arch(), 6)
    assert forward_macs(teacher) == (3_276_800 + 2_654_208 + 1_806_336, 1_605_632 + 3_072)
    student = build_network(parse_spec("gmp16"), 6)
    fwd = 20 * 20 * 16 * 256 + 9 * 9 * 16 * 256 + 7 * 7 * 16 * 144
    assert forward_macs(student) == (fwd, 16 * 6)
    trace = 2 * (16 * 4 * 64 + 16 * 16 * 16 + 16 * 16 * 9) + 210 * 160  # per channel's path
    assert attention_macs("gmp", student) == fwd + 96 + 16 * trace
    # gmp-occlusion: the trace of every channel, then 16 blurred copies forward again
    assert attention_macs("gmp-occlusion", student) == fwd + 96 + 16 * trace + 16 * (fwd + 96) + 16 * 4 * 84 * 84
    assert attention_macs("perturbation", teacher) == 290 * 9_346_048 + 289 * 4 * 84 * 84
    assert attention_macs("perturbation", teacher) > 100 * attention_macs("gmp", student)
    # a fourth 5x5 conv leaves a 3x3 map: 3*3*15*15*25 more, and 9 cells for the cell map
    wide = build_network(parse_spec("gmp15-w5"), 6)
    assert forward_macs(wide)[0] == 20 * 20 * 15 * 256 + 9 * 9 * 15 * 240 + 7 * 7 * 15 * 135 + 3 * 3 * 15 * 375
    assert attention_macs("gmp-cell", wide) == sum(forward_macs(wide)) + 9 * 84 * 84 + 210 * 160 * 4


def test_bench_localize_rows() -> None:
    """Each method at each batch size, timed per frame and compared with GMP at that batch."""
    res = bench_localize("gmp16", frames=2, repeats=1, batches=(1, 2))
    rows = res["rows"]
    assert [(r["batch"], r["agent"], r["method"]) for r in rows[:7]] == [
        (1, "student", "gmp"), (1, "student", "gmp-cell"), (1, "student", "gradcam"), (1, "student", "perturbation"),
        (1, "student", "gmp-occlusion"), (1, "teacher", "gradcam"), (1, "teacher", "perturbation")]
    assert [r["batch"] for r in rows] == [1] * 7 + [2] * 7 and set(res["forward_ms"]) == {"1", "2"}
    for r in rows:
        assert r["ms_per_frame"] > 0 and r["macs_per_frame"] > 0
        gmp = rows[0] if r["batch"] == 1 else rows[7]
        assert r["x_gmp"] == round(r["ms_per_frame"] / gmp["ms_per_frame"], 1)
        forward = res["forward_ms"][str(r["batch"])][r["agent"]]
        assert r["extra_ms"] == pytest.approx(r["ms_per_frame"] - forward, abs=2e-3)
    assert rows[6]["x_gmp_macs"] > 100 and rows[0]["x_gmp"] == 1.0
    assert 5 < rows[4]["x_gmp_macs"] < rows[3]["x_gmp_macs"] / 10  # gmp-occlusion: C + 1 forwards, not 290
