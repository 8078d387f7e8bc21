"""--device through the suite: the flag's refusals, the device a run used on its card, an explicit
torch.device object through every hot path, no tensor on the hot paths made without the run's
device, and (marked gpu, skipped without CUDA; `make gpu-check`) the same on a GPU, with runs resumed
across devices and attention maps equal to the CPU's."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import rl_compress as rlc
from rl_compress.atari.envs import sample_observations
from rl_compress.core import device as device_mod
from rl_compress.core.device import device_record, device_spec, resolve_device, to_device
from rl_compress.core.errors import UserError
from rl_compress.models.networks import bf16_enabled, bf16_is_fast, check_precision
from rl_compress.studies.spec import Run, load_study, wants_gpu
from rl_compress.train.distill import DistillConfig, distill
from rl_compress.train.teacher import TeacherConfig, train_teacher

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
no_cuda_here = pytest.mark.skipif(CUDA, reason="checks the refusal on a machine without CUDA")
gpu = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device (make gpu-check)")]
STUDENT = ROOT / "agents" / "pong" / "gmp16"
TEACHER = ROOT / "agents" / "pong" / "teacher"


def rlc_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("rl-compress")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_device_specs() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert device_spec(torch.device("cpu")) == "cpu"
    for bad in ("gpu", "CPU", "cuda:x", "cuda:", "", "mps"):
        with pytest.raises(UserError, match="^device must be"):
            resolve_device(bad)
    with pytest.raises(UserError, match="^device must be"):
        device_spec(3)  # type: ignore[arg-type]
    rec = device_record(torch.device("cpu"))
    assert rec == {"type": "cpu", "name": "cpu", "torch": torch.__version__}


@no_cuda_here
def test_auto_is_the_cpu_without_cuda_and_says_so_once(capsys: pytest.CaptureFixture[str]) -> None:
    device_mod._announced.clear()
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert capsys.readouterr().err == "device: cpu (--device auto)\n"
    with pytest.raises(UserError, match="CUDA is not available here"):
        resolve_device("cuda:0")


def test_precision_auto_follows_the_device() -> None:
    check_precision("auto")
    with pytest.raises(UserError, match="fp32, bf16 or auto"):
        check_precision("fp16")
    assert bf16_enabled("auto", torch.device("cpu")) == bf16_is_fast(torch.device("cpu"))
    assert not bf16_enabled("fp32", torch.device("cpu"))


def test_to_device_on_the_cpu_shares_memory() -> None:
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    t = to_device(a, torch.device("cpu"))
    assert t.dtype == torch.uint8 and t.data_ptr() == a.__array_interface__["data"][0]


@no_cuda_here
@pytest.mark.parametrize("command", [
    ["teacher", "train", "--steps", "100", "--out", "{tmp}/out"],
    ["distill", "--teacher", str(TEACHER), "--steps", "100", "--out", "{tmp}/out"],
    ["evaluate", str(STUDENT), "--episodes", "1", "--json", "{tmp}/out.json"],
    ["localize", str(STUDENT), "--frames", "5", "--out", "{tmp}/out.npz"],
    ["record", str(STUDENT), "--max-frames", "5", "--out", "{tmp}/out.mp4"],
    ["prune", str(STUDENT), "--out", "{tmp}/out"],
    ["bench", "teacher", "--steps", "100", "--json", "{tmp}/out.json"],
    ["experiment", "run", "{tmp}/study.yaml"],
])
def test_cuda_is_refused_in_one_line_where_there_is_none(command: list[str], tmp_path: Path) -> None:
    (tmp_path / "study.yaml").write_text("games: [pong]\nstudents: [gmp8]\nlosses: [kl]\nseeds: [1]\nsteps: 2000\n"
                                         f"teachers: {{pong: {TEACHER}}}\n")
    res = rlc_cli(*[c.format(tmp=tmp_path) for c in command], "--device", "cuda")
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: ") and "--device cuda: CUDA is not available here (" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]  # nothing written


def test_a_study_sets_devices_and_asks_ray_for_gpus(tmp_path: Path) -> None:
    study = tmp_path / "s.yaml"
    study.write_text("games: [pong]\nstudents: [gmp8, gmp16]\nlosses: [kl]\nseeds: [1]\nsteps: 2000\n"
                     f"teachers: {{pong: {TEACHER}}}\nper_student: {{gmp16: {{distill: {{device: auto}}}}}}\n")
    runs = {r.spec: r for r in load_study(study, device="cpu").runs}
    assert runs["gmp8"].distill["device"] == "cpu" and runs["gmp16"].distill["device"] == "auto"
    assert "device" not in load_study(study).runs[0].distill
    study.write_text(study.read_text().replace("device: auto", "device: gpu"))
    with pytest.raises(UserError, match="run pong/gmp16_kl_student_s1: device must be"):
        load_study(study)
    run = Run("pong", str(TEACHER), "gmp8", "kl", "student", 1, 1000, 2, {"device": "cuda:1"})
    assert wants_gpu(run, cuda_here=False)
    assert not wants_gpu(Run("pong", str(TEACHER), "gmp8", "kl", "student", 1, 1000, 2, {"device": "cpu"}), True)
    auto = Run("pong", str(TEACHER), "gmp8", "kl", "student", 1, 1000, 2, {})
    assert wants_gpu(auto, cuda_here=True) and not wants_gpu(auto, cuda_here=False)


HOT_PATHS = ["train", "atari/evaluate.py", "attention", "api.py", "models/prune.py", "models/transplant.py"]
FACTORY = re.compile(r"torch\.(from_numpy|zeros|ones|empty|full|tensor|as_tensor|arange|rand|randn|randint)\(")


def test_no_tensor_on_a_hot_path_is_made_without_the_device() -> None:
    """Every tensor factory on the hot paths names a device (host arrays go through to_device)."""
    pkg = ROOT / "rl_compress"
    files = [f for p in HOT_PATHS for f in ((pkg / p).rglob("*.py") if (pkg / p).is_dir() else [pkg / p])]
    assert len(files) > 10
    offenders = []
    for f in files:
        text = f.read_text()
        for m in FACTORY.finditer(text):
            call = text[m.start(): text.find("\n", m.start())]
            if m.group(1) == "from_numpy" or "device=" not in call:
                offenders.append(f"{f.relative_to(ROOT)}: {call.strip()}")
    assert offenders == []


def test_every_hot_path_takes_an_explicit_device(tmp_path: Path) -> None:
    """Training, distillation, evaluation and localization with a torch.device object passed through;
    every network input is on that device and the cards record it."""
    cpu = torch.device("cpu")
    seen: set[torch.device] = set()

    def hook(module: torch.nn.Module, inputs: tuple) -> None:
        seen.update(x.device for x in inputs if isinstance(x, torch.Tensor))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        card = train_teacher(TeacherConfig(steps=600, learning_starts=300, buffer_size=2000, eval_every=0, compile=False,
                                           device=cpu, threads=2), tmp_path / "t", show_progress=False)
        assert card["training"]["device"]["type"] == "cpu" and card["training"]["config"]["device"] == "cpu"
        assert card["training"]["updates"] > 0
        card = distill(TEACHER, DistillConfig(steps=600, learning_starts=300, eval_every=0, tb_clip_steps=0,
                                              device=cpu, threads=2), tmp_path / "s", show_progress=False)
        assert card["training"]["device"]["type"] == "cpu" and card["training"]["updates"] > 0
        assert all("cuda" not in m.lower() and "nvidia" not in m.lower() for m in card["training"]["machines"])
        agent = rlc.load_agent(tmp_path / "s", device=cpu)
        res = rlc.evaluate(agent, episodes=1)
        assert len(res["scores"]) == 1
        obs = sample_observations("pong", 8, num_envs=4, warmup=20)
        for method in ("gmp", "gradcam", "perturbation"):
            maps, _ = agent.attention(obs[:2], method=method)
            assert maps.shape == (2, 210, 160)
    finally:
        handle.remove()
    assert seen == {cpu}


# ------------------------------------------------------------------ on a GPU (make gpu-check)
needs_gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (make gpu-check)")


@pytest.fixture()
def exact_cuda() -> Iterator[torch.device]:
    """CUDA with TF32 off, so that GPU and CPU results differ by float32 rounding only."""
    device = resolve_device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield device
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("first,second", [("cuda", "cpu"), ("cpu", "cuda")])
def test_gpu_teacher_run_resumes_on_the_other_device(first: str, second: str, tmp_path: Path) -> None:
    out = tmp_path / "t"
    cfg = TeacherConfig(steps=2000, learning_starts=500, buffer_size=5000, eval_every=0, device=first)
    card = train_teacher(cfg, out, show_progress=False)
    assert card["training"]["device"]["type"] == first and card["training"]["steps"] == 2000
    if first == "cuda":
        assert card["training"]["device"]["cuda"] == torch.version.cuda
    card = train_teacher(TeacherConfig(steps=3000, device=second), out, resume=True, show_progress=False)
    assert card["training"]["device"]["type"] == second and card["training"]["steps"] == 3000
    gpu_name = torch.cuda.get_device_name(0)
    named = [gpu_name in m for m in card["training"]["machines"]]  # the GPU only where a leg used it
    assert named == [first == "cuda", second == "cuda"]
    reloaded = rlc.load_agent(out, device="cpu")
    assert next(reloaded.net.parameters()).device.type == "cpu"


@pytest.mark.gpu
@needs_gpu
def test_gpu_distillation_resumes_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "s"
    cfg = DistillConfig(steps=3000, learning_starts=1000, eval_every=3000, eval_episodes=1, tb_clip_steps=0,
                        device="cuda", precision="auto")
    card = distill(TEACHER, cfg, out, show_progress=False)
    assert card["training"]["device"]["type"] == "cuda" and card["training"]["updates"] > 0
    assert card["training"]["last_eval"]["step"] == 3000
    card = distill(TEACHER, DistillConfig(steps=4000, device="cpu"), out, resume=True, show_progress=False)
    assert card["training"]["device"]["type"] == "cpu" and card["training"]["steps"] == 4000


@pytest.mark.gpu
@needs_gpu
def test_gpu_outputs_and_evaluation_match_the_cpu(exact_cuda: torch.device) -> None:
    obs = sample_observations("pong", 256, num_envs=8, warmup=100)
    on_cpu, on_gpu = rlc.load_agent(STUDENT, device="cpu"), rlc.load_agent(STUDENT, device=exact_cuda)
    with torch.no_grad():
        a = on_cpu.net(torch.from_numpy(obs))
        b = on_gpu.net(to_device(obs, exact_cuda)).cpu()
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    assert (on_gpu.predict(obs)[0] == on_cpu.predict(obs)[0]).mean() >= 0.99
    t = to_device(obs, exact_cuda)
    assert t.device.type == "cuda" and torch.equal(t.cpu(), torch.from_numpy(obs))
    res_gpu, res_cpu = rlc.evaluate(on_gpu, episodes=2), rlc.evaluate(on_cpu, episodes=2)
    assert len(res_gpu["scores"]) == 2 and res_gpu["scores"] == res_cpu["scores"]


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("method", ["gmp", "gradcam", "perturbation"])
def test_gpu_attention_maps_match_the_cpu(method: str, exact_cuda: torch.device) -> None:
    obs = sample_observations("pong", 32, num_envs=8, warmup=100)
    maps_cpu, peaks_cpu = rlc.load_agent(STUDENT, device="cpu").attention(obs, method=method)
    maps_gpu, peaks_gpu = rlc.load_agent(STUDENT, device=exact_cuda).attention(obs, method=method)
    scale = np.maximum(maps_cpu.reshape(32, -1).max(1), 1e-9)
    close = [np.allclose(g, c, atol=1e-3 * s) for g, c, s in zip(maps_gpu, maps_cpu, scale)]
    assert np.mean(close) >= 0.9, np.mean(close)


@pytest.mark.gpu
@needs_gpu
def test_gpu_trained_agent_exports_and_runs_anywhere(tmp_path: Path) -> None:
    import onnxruntime as ort

    from rl_compress.models.networks import parse_spec

    out = tmp_path / "a"
    train_teacher(TeacherConfig(steps=1500, learning_starts=500, buffer_size=3000, eval_every=0, device="cuda"), out,
                  arch=parse_spec("gmp8"), show_progress=False)
    res = rlc_cli("export", str(out), "--format", "onnx", "--out", str(tmp_path / "a.onnx"))
    assert res.returncode == 0, res.stderr
    obs = sample_observations("pong", 16, num_envs=4, warmup=50)
    sess = ort.InferenceSession(str(tmp_path / "a.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = rlc.load_agent(out, device="cpu").net(torch.from_numpy(obs)).numpy()
    np.testing.assert_allclose(sess.run(None, {"obs": obs})[0], ref, rtol=1e-4, atol=1e-4)
    card = json.loads((out / "agent.json").read_text())
    assert card["training"]["device"]["type"] == "cuda"


@pytest.mark.gpu
@needs_gpu
def test_gpu_pqn_returns_and_update_match_the_cpu(exact_cuda: torch.device) -> None:
    from rl_compress.models.networks import build_network, teacher_arch
    from rl_compress.train.pqn import init_pqn_network, pqn_update, q_lambda_returns

    torch.manual_seed(0)
    rewards, values = torch.randn(8, 4).sign(), torch.randn(8, 4)
    terminal, ended = torch.rand(8, 4) < 0.1, torch.rand(8, 4) < 0.2
    on_cpu = q_lambda_returns(rewards, values, terminal, ended, 0.99, 0.65)
    on_gpu = q_lambda_returns(*(t.to(exact_cuda) for t in (rewards, values, terminal, ended)), 0.99, 0.65)
    torch.testing.assert_close(on_gpu.cpu(), on_cpu)
    obs = torch.from_numpy(sample_observations("pong", 32, num_envs=4, warmup=60))
    actions, returns = torch.randint(0, 6, (32,)), torch.randn(32)
    nets = [init_pqn_network(build_network(teacher_arch(layer_norm=True), 6)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    nets[1].to(exact_cuda)
    losses = []
    for net, dev in zip(nets, (torch.device("cpu"), exact_cuda)):
        opt = torch.optim.RAdam(net.parameters(), lr=2.5e-4)
        losses.append(float(pqn_update(net, opt, obs.to(dev), actions.to(dev), returns.to(dev), 10.0)))
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    for (k, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.gpu
@needs_gpu
def test_gpu_pqn_run_resumes_on_the_cpu(tmp_path: Path) -> None:
    from rl_compress.train.pqn import PQNConfig

    out = tmp_path / "pqn"
    cfg = PQNConfig(steps=4096, eval_every=0, device="cuda", envs=64, env_threads=0)
    card = train_teacher(cfg, out, show_progress=False)
    assert card["training"]["device"]["type"] == "cuda" and card["training"]["updates"] > 0
    card = train_teacher(PQNConfig(steps=6144, device="cpu"), out, resume=True, show_progress=False)
    assert card["training"]["device"]["type"] == "cpu" and card["training"]["steps"] >= 6144
