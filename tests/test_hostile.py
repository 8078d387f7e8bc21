"""Hostile input against the CLI: every case ends with one line on stderr, no traceback, the exit
code the README promises, and no file in the run or agent directory changed or left half-written.
Killed writers are real processes killed with SIGKILL in a checkpoint write; the full disk is a real
small tmpfs where the test may mount one (skipped elsewhere)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import rl_compress
from rl_compress.cli.main import main
from rl_compress.core.errors import UserError, first_line
from rl_compress.core.rundir import RunLock

# random init: these runs test refusals, stops and resumes, not the teacher's channels (2,000 teacher states each)
TINY_DISTILL = ["--student", "gmp4", "--envs", "2", "--buffer-size", "2000", "--learning-starts", "100",
                "--eval-every", "0", "--tb-clip-steps", "0", "--init", "random", "--quiet"]
TINY_TRAIN = ["--algo", "dqn", "--game", "breakout", "--arch", "gmp4", "--envs", "2", "--buffer-size", "3000", "--learning-starts",
              "200", "--no-compile", "--eval-every", "0", "--quiet"]


def _exe() -> str:
    return str(Path(sys.executable).with_name("rl-compress"))


def rlc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_exe(), *args], capture_output=True, text=True, timeout=600)


def snapshot(d: Path) -> dict[str, str]:
    """Every file under ``d`` (hidden ones too) with its sha256."""
    if not d.exists():
        return {}
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


def one_line(code: int, err: str, *fragments: str) -> None:
    err = err.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    for f in fragments:
        assert f in err, err


def refused(capsys: pytest.CaptureFixture, args: list[str], *fragments: str, code: int = 2) -> None:
    """Run the CLI in this process (fast) and check the refusal."""
    capsys.readouterr()
    got = main(args)
    err = capsys.readouterr().err
    assert got == code, (got, err)
    one_line(code, err, *fragments)


def parser_refuses(capsys: pytest.CaptureFixture, args: list[str], *fragments: str) -> None:
    """A value the command line's own types refuse: exit 2 and one line, before any work."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    one_line(2, capsys.readouterr().err, *fragments)


def no_temp_files(d: Path) -> None:
    left = [p.name for p in d.iterdir() if p.name.startswith(".")] if d.exists() else []
    assert left == [], left


@pytest.fixture()
def student(random_teacher: Path, tmp_path: Path) -> Path:
    """A real (briefly distilled) gmp4 student with a checkpoint."""
    out = tmp_path / "student"
    assert main(["distill", "--teacher", str(random_teacher), "--out", str(out), "--steps", "400",
                 "--checkpoint-every", "200", *TINY_DISTILL]) == 0
    return out


# ------------------------------------------------------------------ values refused before any work
def test_bad_numbers_refused_up_front(capsys: pytest.CaptureFixture, random_teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = ["distill", "--teacher", str(random_teacher), "--out", str(out), "--steps", "400", *TINY_DISTILL]
    refused(capsys, [*base, "--eval-every", "200", "--eval-episodes", "0"], "--eval-episodes must be positive")
    refused(capsys, [*base, "--lr", "nan"], "--lr must be a finite number")
    refused(capsys, [*base, "--checkpoint-every", "0"], "--checkpoint-every must be positive")
    refused(capsys, [*base, "--sticky", "1.5"], "--sticky must be in [0, 1]")
    train = ["teacher", "train", "--out", str(out), "--steps", "400", *TINY_TRAIN]
    refused(capsys, [*train, "--lr", "inf"], "--lr must be a finite number")
    refused(capsys, [*train, "--checkpoint-every", "0"], "--checkpoint-every must be positive")
    refused(capsys, [*train, "--eps-start", "-1"], "--eps-start must be in [0, 1]")
    assert not out.exists()  # no half-made run directory


def test_unwritable_outputs_refused_up_front(capsys: pytest.CaptureFixture, random_teacher: Path,
                                             tmp_path: Path) -> None:
    a_file = tmp_path / "plain-file"
    a_file.write_text("x")
    under = a_file / "sub"
    before = snapshot(random_teacher)
    refused(capsys, ["teacher", "train", "--out", str(under), "--steps", "400", *TINY_TRAIN], "is a file")
    refused(capsys, ["distill", "--teacher", str(random_teacher), "--out", str(a_file), "--steps", "400",
                     *TINY_DISTILL], "not a directory")
    refused(capsys, ["export", str(random_teacher), "--format", "onnx", "--out", str(under)], "not a directory")
    refused(capsys, ["localize", str(random_teacher), "--frames", "5", "--out", str(a_file / "m.npz")],
            "not a directory")
    refused(capsys, ["record", str(random_teacher), "--out", str(a_file / "v.mp4")], "not a directory")
    refused(capsys, ["evaluate", str(random_teacher), "--episodes", "1", "--json", str(tmp_path)],
            "--json is a directory")
    refused(capsys, ["info", str(random_teacher), "--json", str(tmp_path)], "--json is a directory")
    refused(capsys, ["evaluate", str(random_teacher), "--episodes", "1", "--json", str(a_file / "e.json")],
            "not a directory")
    assert snapshot(random_teacher) == before
    assert a_file.read_text() == "x"


def test_record_numbers(capsys: pytest.CaptureFixture, random_teacher: Path, tmp_path: Path) -> None:
    for args, frag in ((["--scale", "0"], "--scale"), (["--scale", "100000"], "--scale"), (["--fps", "0"], "--fps")):
        for name in ("v.mp4", "v.gif"):
            parser_refuses(capsys, ["record", str(random_teacher), "--out", str(tmp_path / name), *args], frag)
    assert list(tmp_path.iterdir()) == [random_teacher]


def _edit_card(src: Path, dst: Path, **entries) -> Path:
    shutil.copytree(src, dst)
    card = json.loads((dst / "agent.json").read_text())
    card.update(entries)
    (dst / "agent.json").write_text(json.dumps(card))
    return dst


def test_bad_cards_and_weights(capsys: pytest.CaptureFixture, random_teacher: Path, tmp_path: Path) -> None:
    d = _edit_card(random_teacher, tmp_path / "bool", num_actions=True)
    refused(capsys, ["info", str(d)], "num_actions must be an integer")
    d = _edit_card(random_teacher, tmp_path / "huge", num_actions=10**12)
    refused(capsys, ["evaluate", str(d), "--episodes", "1"], "num_actions must be an integer")
    d = _edit_card(random_teacher, tmp_path / "rgb", observation="rgb")  # not the input our networks take
    refused(capsys, ["info", str(d)], "observation must be uint8 [4, 84, 84]")
    d = _edit_card(random_teacher, tmp_path / "othergame", game="breakout")  # 6 actions, Breakout has 4
    for cmd in (["evaluate", str(d), "--episodes", "1"], ["record", str(d), "--out", str(tmp_path / "v.mp4")],
                ["localize", str(d), "--frames", "3", "--out", str(tmp_path / "m.npz")]):
        refused(capsys, cmd, "num_actions 6 does not match breakout")
    d = shutil.copytree(random_teacher, tmp_path / "nan")
    state = load_file(d / "model.safetensors")
    state["conv.2.weight"][0, 0, 0, 0] = float("nan")
    state["fc.1.bias"][3] = float("inf")
    save_file(state, d / "model.safetensors")
    refused(capsys, ["evaluate", str(d), "--episodes", "1"], "conv.2.weight", "NaN or Inf")
    assert not (tmp_path / "v.mp4").exists() and not (tmp_path / "m.npz").exists()


def test_bad_studies(capsys: pytest.CaptureFixture, random_teacher: Path, tmp_path: Path) -> None:
    base = {"name": "s", "games": ["pong"], "teachers": {"pong": str(random_teacher)}, "students": ["gmp4"],
            "losses": ["actor-mimic"], "seeds": [1], "steps": 1000}
    cases = [({"steps": "abc"}, "steps must be a positive integer"), ({"steps": -5}, "steps must be a positive"),
             ({"seeds": 1}, "seeds must be a non-empty list"), ({"games": "pong"}, "games must be a non-empty list"),
             ({"name": "../escape"}, "must be letters"), ({"distill": {"lr": "fast"}}, "--lr must be a finite"),
             ({"distill": {"eval_episodes": 0}}, "--eval-episodes must be positive")]
    for i, (change, frag) in enumerate(cases):
        path = tmp_path / f"study{i}.yaml"
        path.write_text(json.dumps({**base, **change}))  # JSON is YAML
        refused(capsys, ["experiment", "run", str(path)], frag)
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: s\ngames: [pong]  # caf\xe9\n".encode("latin-1"))
    refused(capsys, ["experiment", "run", str(path)], "not UTF-8")
    path = tmp_path / "python.yaml"
    path.write_text("name: !!python/object/apply:os.system ['touch pwned']\n")
    refused(capsys, ["experiment", "run", str(path)], "not valid YAML")
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "escape").exists()
    assert not Path("pwned").exists()


# ------------------------------------------------------------------ foreign code never runs
class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + str(Path.cwd() / "pwned-by-checkpoint"),))


def test_malicious_files_refused_without_running(capsys: pytest.CaptureFixture, student: Path,
                                                 random_teacher: Path, tmp_path: Path) -> None:
    (student / "checkpoint.pt").write_bytes(pickle.dumps({"step": _Evil()}))
    before = snapshot(student)
    refused(capsys, ["distill", "--teacher", str(random_teacher), "--out", str(student), "--resume",
                     "--steps", "800", "--quiet"], "unreadable checkpoint")
    assert snapshot(student) == before and not (Path.cwd() / "pwned-by-checkpoint").exists()
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    z = tmp_path / "data-pickle.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("data", pickle.dumps({"policy_class": _Evil()}))
        f.writestr("policy.pth", buf.getvalue())
    refused(capsys, ["teacher", "import", str(z), "--game", "pong", "--out", str(tmp_path / "imp")],
            "'data' entry is not JSON")
    z = tmp_path / "policy-pickle.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("data", json.dumps({"policy_class": {"__module__": "stable_baselines3.dqn.policies"}}))
        f.writestr("policy.pth", pickle.dumps(_Evil()))
    refused(capsys, ["teacher", "import", str(z), "--game", "pong", "--out", str(tmp_path / "imp")],
            "cannot read policy.pth safely")
    assert not (tmp_path / "imp").exists() and not (Path.cwd() / "pwned-by-checkpoint").exists()


def test_long_messages_cut_at_a_word() -> None:
    msg = "Weights only load failed. " + "This file can still be loaded, to do so you have two options " * 5
    line = first_line(RuntimeError(msg))
    assert len(line) <= 164 and line.endswith(" ...")
    assert msg.startswith(line[:-4]) and msg[len(line) - 4] == " "  # the cut falls between two words


# ------------------------------------------------------------------ nothing overwritten
def test_outputs_never_overwritten(capsys: pytest.CaptureFixture, student: Path, random_teacher: Path,
                                   tmp_path: Path) -> None:
    before = snapshot(student)
    refused(capsys, ["distill", "--teacher", str(random_teacher), "--out", str(student), "--steps", "800",
                     *TINY_DISTILL], "already holds a run", "--force")
    refused(capsys, ["prune", str(student), "--out", str(student)], "is the source agent")
    # teacher import into an agent directory: refused, then replaced only with --force
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    model = DQN("CnnPolicy", VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=1, seed=0), 4),
                buffer_size=500, learning_starts=1000, seed=0, verbose=0)
    model.save(tmp_path / "dqn.zip")
    refused(capsys, ["teacher", "import", str(tmp_path / "dqn.zip"), "--game", "pong", "--out", str(student)],
            "already holds a run; --force replaces it")  # import has no --resume to suggest
    assert snapshot(student) == before
    target = shutil.copytree(student, tmp_path / "replace-me")
    assert main(["teacher", "import", str(tmp_path / "dqn.zip"), "--game", "pong", "--out", str(target),
                 "--force"]) == 0
    assert sorted(p.name for p in target.iterdir()) == ["agent.json", "model.safetensors"]  # no stale run files
    assert json.loads((target / "agent.json").read_text())["kind"] == "teacher"


# ------------------------------------------------------------------ one writer per directory
def test_run_lock_refuses_a_second_writer(capsys: pytest.CaptureFixture, student: Path,
                                          random_teacher: Path) -> None:
    before = snapshot(student)
    with RunLock(student):
        refused(capsys, ["distill", "--teacher", str(random_teacher), "--out", str(student), "--resume",
                         "--steps", "800", "--quiet"], f"in use by process {os.getpid()}")
        refused(capsys, ["teacher", "import", "x.zip", "--game", "pong", "--out", str(student)], "no such file")
    assert snapshot(student) == before
    with pytest.raises(UserError, match="in use by process"), RunLock(student), RunLock(student):
        pass


def _wait_for(cond, timeout: float = 300.0, every: float = 0.002) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(every)
    return False


def test_kill_9_in_a_checkpoint_write_then_resume(tmp_path: Path) -> None:
    """A real trainer killed with SIGKILL while it writes a checkpoint: the lock dies with it, the
    resume sweeps the temp files, keeps one consistent generation and drops the episodes logged
    after the checkpoint it resumes from."""
    out = tmp_path / "run"
    proc = subprocess.Popen([_exe(), "teacher", "train", "--out", str(out), "--steps", "200000",
                             "--checkpoint-every", "400", *TINY_TRAIN], stderr=subprocess.PIPE, text=True)
    # a second writer is refused while the first one runs, naming it
    assert _wait_for(lambda: (out / ".lock").exists() and (out / ".lock").read_text().strip() != "")
    res = rlc("teacher", "train", "--out", str(out), "--resume", "--steps", "300000")
    one_line(2, res.stderr, f"in use by process {proc.pid}")
    assert res.returncode == 2
    # kill it inside a checkpoint write (a staged temp file is there), after its first checkpoint
    def staged():
        return (out / "checkpoint.pt").exists() and any(p.name.endswith(".tmp") for p in out.iterdir())
    assert _wait_for(staged), proc.stderr.read() if proc.poll() is not None else "no checkpoint write seen"
    proc.kill()
    proc.wait(timeout=60)
    ckpt_step = int(torch.load(out / "checkpoint.pt", weights_only=True)["step"])
    res = rlc("teacher", "train", "--out", str(out), "--resume", "--steps", str(ckpt_step + 8))
    assert res.returncode == 0, res.stderr
    assert "removed temp files of a stopped writer" in res.stderr
    no_temp_files(out)
    card = json.loads((out / "agent.json").read_text())
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert card["training"]["steps"] == ckpt["step"] == ckpt_step + 8 and card["training"]["finished"]
    with np.load(out / "replay.npz") as replay:
        assert int(replay["step"]) == ckpt_step + 8
    rows = (out / "returns.csv").read_text().splitlines()
    assert rows[0] == "step,return,length,wall_time" and rows.count(rows[0]) == 1
    assert all(float(r.split(",")[0]) <= ckpt_step + 8 for r in rows[1:])


def test_resume_repairs_a_torn_generation(student: Path, random_teacher: Path, tmp_path: Path) -> None:
    """The files a kill between two renames of a checkpoint leaves: checkpoint.pt of step 600, weights
    and card of step 400 (and returns logged past 600). The resume says so and rewrites them."""
    old = {name: (student / name).read_bytes() for name in ("agent.json", "model.safetensors")}
    res = rlc("distill", "--teacher", str(random_teacher), "--out", str(student), "--resume", "--steps", "600",
              "--quiet")
    assert res.returncode == 0, res.stderr
    for name, data in old.items():
        (student / name).write_bytes(data)
    with open(student / "returns.csv", "a") as f:
        f.write("99999,-21.0,800,1.0\n")
    res = rlc("distill", "--teacher", str(random_teacher), "--out", str(student), "--resume", "--steps", "602",
              "--quiet")
    assert res.returncode == 0, res.stderr
    assert "held step 400, checkpoint.pt step 600: rewriting them" in res.stderr
    assert "dropped 1 row(s) logged after the checkpoint's step 600" in res.stderr
    card = json.loads((student / "agent.json").read_text())
    assert card["training"]["steps"] == torch.load(student / "checkpoint.pt", weights_only=True)["step"] == 602
    assert "99999" not in (student / "returns.csv").read_text()


# ------------------------------------------------------------------ signals
def test_sigterm_during_record_leaves_nothing(student: Path, tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    proc = subprocess.Popen([_exe(), "record", str(student), "--out", str(video), "--max-frames", "100000",
                             "--quiet"], stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: any(p.name.startswith(".v.tmp") for p in tmp_path.iterdir()))
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    one_line(143, err, "stopped by SIGTERM")
    assert not video.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_sigterm_stops_distill_with_128_plus_signal(random_teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([_exe(), "distill", "--teacher", str(random_teacher), "--out", str(out), "--steps",
                             "500000", *TINY_DISTILL], stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: (out / "returns.csv").exists() or proc.poll() is not None, every=0.05)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and f"rl-compress distill --teacher {random_teacher} --out {out} --resume" in err
    step = int(torch.load(out / "checkpoint.pt", weights_only=True)["step"])
    assert 0 < step < 500000 and json.loads((out / "agent.json").read_text())["training"]["steps"] == step
    no_temp_files(out)


# ------------------------------------------------------------------ a full disk
def _tmpfs(tmp_path: Path, size: str):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture()
def small_disk(tmp_path: Path):
    yield from _tmpfs(tmp_path, "2m")


@pytest.fixture()
def disk(tmp_path: Path):
    """A 16 MB tmpfs: room for a teacher, then remounted read-only by the test."""
    yield from _tmpfs(tmp_path, "16m")


def test_full_disk_keeps_the_previous_checkpoint(small_disk: Path, random_teacher: Path) -> None:
    out = small_disk / "run"
    args = ["distill", "--teacher", str(random_teacher), "--out", str(out), "--checkpoint-every", "200"]
    res = rlc(*args, "--steps", "200", *TINY_DISTILL)
    assert res.returncode == 0, res.stderr
    before = snapshot(out)
    free = shutil.disk_usage(small_disk).free
    with open(small_disk / "filler", "wb") as f:  # leave a few KB: less than a checkpoint
        f.write(b"\0" * max(free - 8192, 0))
    res = rlc(*args[:-2], "--resume", "--steps", "400", "--quiet")
    assert res.returncode == 1, res.stderr
    one_line(1, res.stderr, "no space left on the device", "needs about", "previous checkpoint is intact")
    assert snapshot(out) == before
    no_temp_files(out)
    (small_disk / "filler").unlink()
    res = rlc(*args[:-2], "--resume", "--steps", "400", "--quiet")
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "agent.json").read_text())["training"]["steps"] == 400


def test_full_disk_during_export_and_record(small_disk: Path, random_teacher: Path) -> None:
    """Exports and videos bigger than the disk's room: one line, exit 1, no part file."""
    with open(small_disk / "filler", "wb") as f:  # leave 64 KB: less than any of these files
        f.write(b"\0" * max(shutil.disk_usage(small_disk).free - 65536, 0))
    for args in (["export", str(random_teacher), "--format", "onnx", "--out", str(small_disk / "t.onnx")],
                 ["export", str(random_teacher), "--format", "torchscript", "--out", str(small_disk / "t.pt")],
                 ["record", str(random_teacher), "--out", str(small_disk / "v.gif"), "--max-frames", "100",
                  "--quiet", "--overlay", "none"]):
        res = rlc(*args)
        assert res.returncode == 1, res.stderr
        one_line(1, res.stderr, "could not write", "No space left on device")
    assert [p.name for p in small_disk.iterdir()] == ["filler"]


def test_read_only_agent_and_broken_pipe(disk: Path, random_teacher: Path) -> None:
    """An agent on a read-only disk: writing its card or taking its lock is one line (exit 1), reading it
    works. `info A | head -1`: the reader going away ends the command quietly."""
    agent = shutil.copytree(random_teacher, disk / "agent")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    for args in (["evaluate", str(agent), "--episodes", "1", "--write-card", "--quiet"], ["card", str(agent)]):
        res = rlc(*args)
        assert res.returncode == 1, res.stderr
        one_line(1, res.stderr, "cannot write there", "Read-only file system")
    assert rlc("info", str(agent)).returncode == 0
    proc = subprocess.run(f"'{_exe()}' info '{agent}' | head -c 10", shell=True, capture_output=True, text=True,
                          timeout=300)
    assert len(proc.stdout) == 10 and proc.stderr == "", proc.stderr


# ------------------------------------------------------------------ lost work: an output is never an input
def test_an_output_never_destroys_an_input(capsys: pytest.CaptureFixture, student: Path, random_teacher: Path,
                                           tmp_path: Path) -> None:
    before = snapshot(student)
    refused(capsys, ["evaluate", str(student), "--episodes", "1", "--json", str(student / "agent.json")],
            "is a file of the agent in")
    refused(capsys, ["export", str(student), "--format", "onnx", "--out", str(student / "model.safetensors")],
            "is a file of the agent in")
    refused(capsys, ["table", str(student), "--md", str(student / "agent.json")], "is a file of the agent in")
    refused(capsys, ["distill", "--teacher", str(random_teacher), "--out", str(random_teacher), "--force",
                     "--steps", "400", *TINY_DISTILL], "would overwrite its own input")
    refused(capsys, ["distill", "--teacher", str(random_teacher), "--out", str(random_teacher.parent), "--force",
                     "--steps", "400", *TINY_DISTILL], "would overwrite its own input")
    refused(capsys, ["distill", "--teacher", str(random_teacher), "--out", str(student), "--force", "--steps", "400",
                     "--init-from", str(student), *TINY_DISTILL], "would overwrite its own input")
    refused(capsys, ["prune", str(student), "--out", str(student / "sub")], "would overwrite its own input")
    refused(capsys, ["teacher", "import", str(random_teacher), "--out", str(random_teacher), "--force"],
            "would overwrite its own input")
    assert snapshot(student) == before
    # an agent directory imports as a copy of itself (weights byte for byte), elsewhere
    assert main(["teacher", "import", str(random_teacher), "--out", str(tmp_path / "copy")]) == 0
    assert (tmp_path / "copy" / "model.safetensors").read_bytes() == (random_teacher / "model.safetensors").read_bytes()
    assert (random_teacher / "agent.json").exists() and (random_teacher / "model.safetensors").exists()


def test_weights_of_another_step_are_not_loaded_as_consistent(capsys: pytest.CaptureFixture, student: Path,
                                                                random_teacher: Path) -> None:
    """A kill -9 after the weights' rename and before the card's: weights of step 600 beside the
    card and checkpoint of step 400. `info` refuses them in one line; `--resume` repairs them."""
    old = {name: (student / name).read_bytes() for name in ("agent.json", "checkpoint.pt")}
    assert main(["distill", "--teacher", str(random_teacher), "--out", str(student), "--resume", "--steps", "600",
                 "--quiet"]) == 0
    for name, data in old.items():
        (student / name).write_bytes(data)
    refused(capsys, ["info", str(student)], "holds the weights of step 600", "says step 400", "--resume")
    res = rlc("distill", "--teacher", str(random_teacher), "--out", str(student), "--resume", "--steps", "602",
              "--quiet")
    assert res.returncode == 0, res.stderr
    assert "model.safetensors held step 600, agent.json step 400, checkpoint.pt step 400: rewriting" in res.stderr
    assert main(["info", str(student)]) == 0


def test_resume_alone_goes_on_with_the_runs_own_settings(random_teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([_exe(), "distill", "--teacher", str(random_teacher), "--out", str(out), "--steps", "700",
                             "--max-wall-time", "600", "--checkpoint-every", "100", *TINY_DISTILL],
                            stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: (out / "checkpoint.pt").exists() or proc.poll() is not None, every=0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err
    resume = err.strip().split("resume with: ")[1].split()
    assert resume[0] == "rl-compress" and "--steps" not in resume
    res = rlc(*resume[1:], "--quiet")
    assert res.returncode == 0, res.stderr
    tr = json.loads((out / "agent.json").read_text())["training"]
    assert tr["steps"] == 700 and tr["finished"]
    assert (tr["config"]["max_wall_time"], tr["config"]["checkpoint_every"], tr["config"]["eval_every"]) == (600, 100, 0)


def test_hub_revisions_stay_in_the_cache(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    for rev in ("../../../../x", "main/../../x", "/etc", "a//b"):
        refused(capsys, ["teacher", "import", f"hf:sb3/dqn-PongNoFrameskip-v4@{rev}", "--out", str(tmp_path / "t")],
                "a revision is a branch, tag or commit id")
    assert not (tmp_path / "t").exists()


# ------------------------------------------------------------------ values past any range, damaged files, divergence
def test_numbers_past_any_range_refused_up_front(capsys: pytest.CaptureFixture, random_teacher: Path,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "run"
    train = ["teacher", "train", "--out", str(out), *TINY_TRAIN]
    refused(capsys, [*train, "--seed", "99999999999999999999"], "--seed must be at most 1073741824")
    refused(capsys, [*train, "--envs", "100000"], "--envs must be at most 1024")
    refused(capsys, [*train, "--steps", str(10**22)], "--steps must be at most 10000000000")
    refused(capsys, [*train, "--buffer-size", "1000000000"], "--buffer-size 1000000000 needs", "GiB of memory",
            "available")
    distill = ["distill", "--teacher", str(random_teacher), "--out", str(out), *TINY_DISTILL]
    refused(capsys, [*distill, "--buffer-size", "1000000000"], "GiB of memory")
    refused(capsys, [*distill, "--envs", "100000"], "--envs must be at most 1024")
    refused(capsys, [*distill, "--eval-seed", str(2**40)], "--eval-seed must be at most")
    refused(capsys, [*train, "--tensorboard", str(random_teacher / "agent.json" / "tb")], "--tensorboard cannot be made",
            "is a file")
    parser_refuses(capsys, ["localize", str(random_teacher), "--frames", "3", "--radius", "nan", "--score",
                            "--out", str(tmp_path / "m.npz")], "--radius", "finite number")
    parser_refuses(capsys, ["table", str(random_teacher), "--threshold", "nan"], "--threshold", "finite number")
    parser_refuses(capsys, ["bench", "distill", "--steps", "-5"], "--steps", "must be in [1,")
    parser_refuses(capsys, ["evaluate", str(random_teacher), "--episodes", "0"], "--episodes", "must be in [1,")
    parser_refuses(capsys, ["evaluate", str(random_teacher), "--seed", "-1"], "--seed", "must be in [0,")
    parser_refuses(capsys, ["record", str(random_teacher), "--out", str(tmp_path / "v.mp4"), "--max-frames", "x"],
                   "--max-frames", "must be an integer")
    parser_refuses(capsys, ["experiment", "run", "s.yaml", "--budget", "inf"], "--budget", "finite number")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]  # nothing made, no run directory


def test_card_numbers_of_the_wrong_type_or_size(capsys: pytest.CaptureFixture, random_teacher: Path,
                                               tmp_path: Path) -> None:
    arch = json.loads((random_teacher / "agent.json").read_text())["arch"]
    cases = [({"params": "a"}, "params must be a non-negative integer, got 'a'"),
             ({"params": -3}, "params must be a non-negative integer"),
             ({"training": {"steps": "lots"}}, "training.steps must be a non-negative integer"),
             ({"training": {"wall_time_s": float("nan")}}, "training.wall_time_s must be a finite number"),
             ({"evaluation": {"mean": "high", "std": 0, "episodes": 1}}, "evaluation.mean must be a finite number"),
             ({"arch": {**arch, "hidden": -5}}, "arch hidden must be an integer from 0 to 65536, got -5"),
             ({"arch": {**arch, "hidden": 10**7}}, "arch hidden must be an integer from 0 to 65536"),  # 125 GB
             ({"arch": {**arch, "channels": [10**6, 64, 64]}}, "arch channels must be a list of integers"),
             ({"arch": {**arch, "channels": [32, 64.5, 64]}}, "arch channels must be a list of integers")]
    for i, (entries, fragment) in enumerate(cases):
        d = _edit_card(random_teacher, tmp_path / f"card{i}", **entries)
        before = snapshot(d)
        refused(capsys, ["info", str(d)], fragment)
        refused(capsys, ["evaluate", str(d), "--episodes", "1"], fragment)
        assert snapshot(d) == before
        with pytest.raises(UserError, match=fragment.split(",")[0]):
            rl_compress.load_agent(d)


def test_resume_over_a_damaged_returns_log(capsys: pytest.CaptureFixture, student: Path,
                                           random_teacher: Path) -> None:
    """returns.csv with bytes that are not UTF-8 and rows that are not numbers: the resume drops those
    rows with a note and goes on; the learning curve is drawn from the rows that can be read."""
    log = student / "returns.csv"
    good = log.read_bytes()
    log.write_bytes(good + b"100,-21.0,90,1.0\n\xff\xfe,1.0,3,0.1\nabc,def\n200,-20.0,95,2.0\n")
    capsys.readouterr()
    assert main(["distill", "--teacher", str(random_teacher), "--out", str(student), "--resume", "--steps", "600",
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "returns.csv: dropped 2 row(s)" in err and "Traceback" not in err
    text = log.read_text(encoding="utf-8")  # valid UTF-8 again, the old rows kept
    kept = [*good.decode().splitlines(), "100,-21.0,90,1.0", "200,-20.0,95,2.0"]
    assert text.splitlines()[:len(kept)] == kept and "abc" not in text
    assert json.loads((student / "agent.json").read_text())["training"]["steps"] == 600
    assert (student / "learning_curve.png").stat().st_size > 1000


def test_a_diverged_run_keeps_its_last_checkpoint(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """An absurd learning rate makes the weights Inf/NaN within a few updates: the run stops at once with
    exit 1 and one line, and the directory still holds the last finite checkpoint, which loads."""
    out = tmp_path / "div"
    args = ["teacher", "train", "--out", str(out), "--steps", "3000", "--lr", "1e30", "--checkpoint-every", "200",
            *TINY_TRAIN]
    refused(capsys, args, "training diverged", "NaN or Inf", "keeps its last checkpoint", code=1)
    card = json.loads((out / "agent.json").read_text())
    assert card["training"]["steps"] == 200 and not card["training"]["finished"]
    agent = rl_compress.load_agent(out)  # finite weights: the NaN ones were never written
    assert agent.predict(np.zeros((4, 84, 84), np.uint8))[0] in range(4)


def test_python_api_errors_name_the_argument(random_teacher: Path) -> None:
    agent = rl_compress.load_agent(random_teacher)
    obs = np.zeros((4, 84, 84), np.uint8)
    for call, fragment in ((lambda: rl_compress.load_agent(3), "source must be a path or 'hf:ORG/NAME', got int"),
                           (lambda: rl_compress.load_agent(random_teacher, game=4), "game must be a game name"),
                           (lambda: rl_compress.make_env("pong", noop_max=-1), "noop_max must be an integer from 0"),
                           (lambda: rl_compress.make_env("pong", sticky=1.5), "sticky must be a number from 0"),
                           (lambda: rl_compress.make_env(7), "game must be a game name"),
                           (lambda: agent.attention(obs, "gradcam", k=0), "k must be an integer from 1 to 64"),
                           (lambda: agent.attention(obs, "gradcam", k=2.5), "k must be an integer"),
                           (lambda: rl_compress.evaluate(agent, episodes=1, seed=0.5), "seed must be an integer"),
                           (lambda: rl_compress.evaluate(agent, episodes=1, seed=-1), "seed must be an integer from 0"),
                           (lambda: rl_compress.evaluate(agent, episodes=0), "^episodes must be a positive integer")):
        with pytest.raises(UserError, match=fragment):
            call()


def test_a_stop_during_the_emulators_start_ends_the_run_at_once(tmp_path: Path) -> None:
    """Building many emulators is one C++ call that holds the GIL, so no Python handler runs until it
    returns (minutes for 1,024 envs). A run's setup builds them with the default signal action: a
    SIGTERM then ends the process at once (128 + 15), before anything of the run is written."""
    code = ("import signal, sys\n"
            "from rl_compress.atari.envs import make_vector_env\n"
            "from rl_compress.core.signals import stops_end_at_once\n"
            "signal.signal(signal.SIGTERM, lambda *a: print('handler ran', flush=True))\n"
            "with stops_end_at_once():\n"
            "    print('building', flush=True)\n"
            "    env = make_vector_env('pong', 128)\n"
            "print('built', flush=True)\n"
            "assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    assert child.stdout.readline().strip() == "building"
    time.sleep(0.5)
    child.send_signal(signal.SIGTERM)
    rest = child.stdout.read()
    assert child.wait(timeout=600) == -signal.SIGTERM and "built" not in rest and "handler ran" not in rest
