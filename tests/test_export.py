"""Exported ONNX / TorchScript models match PyTorch on real observations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rl_compress.atari.envs import sample_observations
from rl_compress.core.errors import UserError
from rl_compress.models.agent import load_agent
from rl_compress.models.export import export


def test_onnx_and_torchscript_match(random_teacher: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    agent = load_agent(random_teacher)
    obs = sample_observations("pong", 16)
    assert obs[:, -1].any(), "observations must show the game"
    with torch.no_grad():
        ref = agent.net(torch.from_numpy(obs)).numpy()

    onnx_path = export(agent.net, "onnx", tmp_path / "t.onnx")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    assert inp.type == "tensor(uint8)" and inp.shape[1:] == [4, 84, 84]
    for batch in (1, 16):
        got = sess.run(None, {inp.name: obs[:batch]})[0]
        assert got.dtype == np.float32 and got.shape == (batch, 6)
        np.testing.assert_allclose(got, ref[:batch], atol=1e-4, rtol=0)

    ts_path = export(agent.net, "torchscript", tmp_path / "t.pt")
    ts = torch.jit.load(str(ts_path))
    for batch in (1, 16):
        got = ts(torch.from_numpy(obs[:batch])).detach().numpy()
        assert got.dtype == np.float32 and got.shape == (batch, 6)
        np.testing.assert_allclose(got, ref[:batch], atol=1e-4, rtol=0)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_bad_format(random_teacher: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError):
        export(load_agent(random_teacher).net, "tflite", tmp_path / "x")
