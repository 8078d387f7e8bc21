"""int8 export: the shipped 0.28% Pong student quantised by ONNX Runtime on frames it plays, its
size, its agreement with fp32, and the exact transformations the recipe relies on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import onnx
import pytest
import torch

import rl_compress as rlc
from rl_compress.cli import main
from rl_compress.models.networks import conv_activations
from rl_compress.models.quantize import (
    compact,
    equalize_channels,
    onnx_actions,
    onnx_session,
    played_frames,
    read_calibration,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "agents" / "pong" / "gmp15-w5-0.3pct-tuned"  # 4,684 parameters


@pytest.fixture(scope="module")
def tiny() -> rlc.Agent:
    return rlc.load_agent(TINY)


@pytest.fixture(scope="module")
def frames(tiny: rlc.Agent) -> np.ndarray:
    return played_frames(tiny.net, "pong", 256, seed=3)


@pytest.fixture(scope="module")
def int8(tiny: rlc.Agent, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("int8")
    fp32 = rlc.export(tiny, d / "fp32.onnx")
    return fp32, rlc.export(tiny, d / "int8.onnx", quantize="int8", calibration_frames=512, seed=0)


def test_played_frames_are_the_agents_games(frames: np.ndarray) -> None:
    assert frames.shape == (256, 4, 84, 84) and frames.dtype == np.uint8
    assert frames[:, -1].any(axis=(1, 2)).mean() > 0.9  # the screens show the game
    distinct = len(np.unique(frames.reshape(len(frames), -1), axis=0))
    assert distinct > 150, distinct  # 8 games from their starts: some first frames repeat, most do not


def test_equalization_keeps_outputs_and_evens_channel_peaks(tiny: rlc.Agent, frames: np.ndarray) -> None:
    eq = equalize_channels(tiny.net, frames)
    x = torch.as_tensor(frames)
    with torch.no_grad():
        np.testing.assert_allclose(eq(x).numpy(), tiny.net(x).numpy(), rtol=1e-4, atol=1e-4)
        before = [a.amax(dim=(0, 2, 3)) for a in conv_activations(tiny.net.conv, x)]
        after = [a.amax(dim=(0, 2, 3)) for a in conv_activations(eq.conv, x)]
    live = before[0] > 1e-6
    assert (before[0][live].min() / before[0][live].max()) < 0.9  # the channels' peaks differed
    for peaks, old in zip(after, before):
        on = old > 1e-6
        np.testing.assert_allclose(peaks[on].numpy(), peaks[on].max().item(), rtol=1e-4)
    assert tiny.net.conv[0].weight is not eq.conv[0].weight  # the agent itself is untouched


def test_compact_keeps_the_function(tiny: rlc.Agent, frames: np.ndarray, tmp_path: Path) -> None:
    path = rlc.export(tiny, tmp_path / "m.onnx")
    model = onnx.load(str(path))
    small = compact(onnx.load(str(path)))
    assert len(small.SerializeToString()) < len(model.SerializeToString())
    assert [v.name for v in small.graph.input] == ["obs"] and [v.name for v in small.graph.output] == ["out"]
    got = onnx_session(small.SerializeToString()).run(None, {"obs": frames})[0]
    want = onnx_session(model.SerializeToString()).run(None, {"obs": frames})[0]
    np.testing.assert_array_equal(got, want)


def test_int8_model_is_small_integer_and_follows_fp32(tiny: rlc.Agent, frames: np.ndarray,
                                                      int8: tuple[Path, Path]) -> None:
    fp32, q = int8
    model = onnx.load(str(q))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QLinearConv") == 4 and "Conv" not in ops  # every convolution runs in integers
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)  # standard ONNX only
    weights = [t for t in model.graph.initializer if len(t.dims) == 4]
    assert len(weights) == 4 and all(t.data_type == onnx.TensorProto.UINT8 for t in weights)
    assert q.stat().st_size <= 0.35 * fp32.stat().st_size
    sess = onnx_session(q.read_bytes())
    assert sess.get_inputs()[0].type == "tensor(uint8)" and sess.get_outputs()[0].type == "tensor(float)"
    cal = read_calibration(q.read_bytes())
    assert cal is not None and read_calibration(fp32.read_bytes()) is None
    assert (cal["game"], cal["frames"], cal["held_out_frames"], cal["equalized"]) == ("pong", 512, 256, True)
    assert cal["fp32_bytes"] == fp32.stat().st_size
    with torch.no_grad():
        want = tiny.net(torch.as_tensor(frames)).argmax(1).numpy()
    agree = float(np.mean(onnx_actions(q.read_bytes(), frames) == want))
    assert agree >= 0.9, agree  # 0.96-0.98 measured on 500-1,000 held-out frames (docs/results/deploy.md)
    assert abs(agree - cal["agreement"]) < 0.08


def test_cli_export_int8_and_evaluate_it(int8: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    _, q = int8
    assert main(["evaluate", str(TINY), "--onnx", str(q), "--episodes", "1", "--quiet",
                 "--json", str(tmp_path / "e.json")]) == 0
    err = capsys.readouterr().err
    assert "pong: mean" in err
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["onnx"] == str(q) and len(res["scores"]) == 1 and -21 <= res["scores"][0] <= 21


def test_int8_refusals(tiny: rlc.Agent, int8: tuple[Path, Path], tmp_path: Path,
                       capsys: pytest.CaptureFixture) -> None:
    cases = [
        (["export", str(TINY), "--format", "torchscript", "--quantize", "int8", "--out", str(tmp_path / "a.pt")],
         "exports ONNX only"),
        (["evaluate", str(TINY), "--onnx", str(int8[1]), "--write-card"], "--write-card"),
        (["evaluate", str(ROOT / "agents" / "breakout" / "teacher"), "--onnx", str(int8[1]), "--episodes", "1"],
         "the agent has 4 actions"),
        (["evaluate", str(TINY), "--onnx", str(tmp_path / "none.onnx"), "--episodes", "1"], "No such file"),
    ]
    for args, fragment in cases:
        capsys.readouterr()
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, err
    assert not list(tmp_path.iterdir())
    with pytest.raises(rlc.UserError, match="calibration_frames"):
        rlc.export(tiny, tmp_path / "x.onnx", quantize="int8", calibration_frames=10)
    with pytest.raises(rlc.UserError, match="quantize must be"):
        rlc.export(tiny, tmp_path / "x.onnx", quantize="int4")


def test_bench_deploy_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    md, js = tmp_path / "deploy.md", tmp_path / "deploy.json"
    assert main(["bench", "deploy", "--agents", str(TINY), "--episodes", "0", "--calibration-frames", "256",
                 "--md", str(md), "--json", str(js)]) == 0
    res = json.loads(js.read_text())
    fp32, int8 = res["rows"]
    assert (fp32["precision"], int8["precision"]) == ("fp32", "int8")
    assert fp32["params"] == int8["params"] == 4684
    assert int8["bytes"] <= 0.35 * fp32["bytes"]
    assert all(r["ms_per_frame"]["b1"] > 0 and r["ms_per_frame"]["b32"] > 0 for r in (fp32, int8))
    assert fp32["agreement"] is None and 0.85 <= int8["agreement"] <= 1.0
    assert fp32["score"] is None and res["episodes"] == 0
    table = md.read_text()
    assert table.count("\n") == 4 and "| int8 | 4,684 |" in table
    assert table.strip() in capsys.readouterr().err


@pytest.mark.parametrize(("with_attention", "method"), [(True, "gmp-cell"), ("gmp", "gmp")])
def test_attention_inside_the_exported_graph(tiny: rlc.Agent, frames: np.ndarray, tmp_path: Path,
                                             with_attention: bool | str, method: str) -> None:
    """The graph's map and peaks are Agent.attention's for the method: the cells (True), or each
    max traced to its input pixel ("gmp")."""
    path = rlc.export(tiny, tmp_path / "a.onnx", with_attention=with_attention, peaks=4)
    sess = onnx_session(path.read_bytes())
    assert [o.name for o in sess.get_outputs()] == ["out", "attention", "peaks"]
    out, maps, peaks = sess.run(None, {"obs": frames})
    with torch.no_grad():
        np.testing.assert_allclose(out, tiny.net(torch.as_tensor(frames)).numpy(), atol=1e-4)
    want_maps, want_peaks = tiny.attention(frames, method=method, k=4)
    assert maps.shape == (256, 210, 160) and peaks.shape == (256, 4, 3)
    assert want_maps.max() > 1.0 and (want_peaks[:, 0, 2] == 1.0).mean() > 0.9  # real maps, not empty ones
    np.testing.assert_allclose(maps, want_maps, atol=1e-4 * want_maps.max())
    np.testing.assert_allclose(peaks, want_peaks, atol=1e-3)
    ts = rlc.export(tiny, tmp_path / "a.pt", format="torchscript", with_attention=with_attention)
    q, m, p = torch.jit.load(str(ts))(torch.as_tensor(frames[:8]))
    assert q.shape == (8, 6) and m.shape == (8, 210, 160) and p.shape == (8, 5, 3)


def test_int8_with_attention(tiny: rlc.Agent, frames: np.ndarray, tmp_path: Path) -> None:
    path = rlc.export(tiny, tmp_path / "a8.onnx", quantize="int8", calibration_frames=512, with_attention=True)
    out, maps, peaks = onnx_session(path.read_bytes()).run(None, {"obs": frames})
    assert [n.op_type for n in onnx.load(str(path)).graph.node].count("QLinearConv") == 4
    actions = tiny.net(torch.as_tensor(frames)).argmax(1).numpy()
    assert np.mean(out.argmax(1) == actions) >= 0.9
    _, want_peaks = tiny.attention(frames, method="gmp-cell", k=5)
    same_top = np.all(np.abs(peaks[:, 0, :2] - want_peaks[:, 0, :2]) < 1e-3, axis=1)
    assert same_top.mean() >= 0.8, same_top.mean()  # the int8 pool mostly lands on the same cell
    assert read_calibration(path.read_bytes())["fp32_bytes"] > rlc.export(tiny, tmp_path / "p.onnx").stat().st_size


def test_attention_export_refusals(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert main(["export", str(ROOT / "agents" / "pong" / "teacher"), "--format", "onnx", "--with-attention",
                 "--out", str(tmp_path / "t.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "global max pool" in err
    with pytest.raises(SystemExit):  # a method the graph does not compute: the parser's one line
        main(["export", str(ROOT / "agents" / "pong" / "gmp15-w5-15min"), "--with-attention", "gradcam", "--out",
              str(tmp_path / "g.onnx")])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid choice: 'gradcam'" in err
    with pytest.raises(rlc.UserError, match="^with_attention takes gmp-cell, gmp, got 'pixel'"):
        rlc.export(rlc.load_agent(ROOT / "agents" / "pong" / "gmp15-w5-15min"), tmp_path / "p.onnx",
                   with_attention="pixel")
    assert not list(tmp_path.iterdir())


def test_example_plays_the_int8_model_without_torch(tiny: rlc.Agent, tmp_path: Path) -> None:
    model = rlc.export(tiny, tmp_path / "p.onnx", quantize="int8", calibration_frames=256, with_attention=True)
    video = tmp_path / "p.mp4"
    blocked = ("import runpy, sys; sys.modules['torch'] = None; sys.modules['rl_compress'] = None; "
               "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    res = subprocess.run([sys.executable, "-c", blocked, str(ROOT / "examples" / "play_onnx.py"), str(model),
                          "--max-steps", "120", "--video", str(video)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert re.search(r"^Pong: score -?\d+ in 120 agent steps$", res.stdout, re.M), res.stdout
    frames = imageio.mimread(str(video))
    assert len(frames) == 120 and frames[0].shape == (630, 480, 3)
    plain = rlc.export(tiny, tmp_path / "plain.onnx")
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "play_onnx.py"), str(plain), "--max-steps", "5",
                          "--video", str(tmp_path / "x.mp4")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "--with-attention" in res.stderr and not (tmp_path / "x.mp4").exists()
