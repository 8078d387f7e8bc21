"""The console script: every subcommand listed, the agent tools work, bad input gives one line."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rl_compress.cli.main import main

ROOT = Path(__file__).resolve().parents[1]

SUBCOMMANDS = ["teacher", "distill", "evaluate", "record", "localize", "export", "info", "bench", "experiment", "table"]


def rlc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``rl-compress`` as a user would (the installed console script)."""
    exe = Path(sys.executable).with_name("rl-compress")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture) -> None:
    res = rlc("--help")  # the installed console script once; each subcommand's help in this process
    assert res.returncode == 0
    for sub in SUBCOMMANDS:
        assert sub in res.stdout
    for sub in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([sub, "--help"])
        assert exc.value.code == 0
        assert f"usage: rl-compress {sub}" in capsys.readouterr().out


def test_info_evaluate_export(random_teacher: Path, tmp_path: Path) -> None:
    res = rlc("info", str(random_teacher))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"{random_teacher}: teacher nature_dqn playing pong (6 actions)"
    assert lines[1] == "  size       1,687,206 parameters" and "not evaluated" in lines[2]
    res = rlc("info", str(random_teacher), "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["params"] == 1_687_206 and info["game"] == "pong" and info["kind"] == "teacher"

    out = tmp_path / "eval.json"
    res = rlc("evaluate", str(random_teacher), "--episodes", "2", "--json", str(out), "--write-card", "--quiet")
    assert res.returncode == 0, res.stderr
    ev = json.loads(out.read_text())
    assert len(ev["scores"]) == 2 and ev["mean"] == np.mean(ev["scores"])
    card = json.loads((random_teacher / "agent.json").read_text())
    assert card["evaluation"]["scores"] == ev["scores"]
    assert card["evaluation"]["weights_sha256"] == hashlib.sha256((random_teacher / "model.safetensors").read_bytes()).hexdigest()

    onnx = tmp_path / "m.onnx"
    res = rlc("export", str(random_teacher), "--format", "onnx", "--out", str(onnx))
    assert res.returncode == 0, res.stderr
    assert onnx.stat().st_size > 6_000_000


def _one_line(code: int, err: str, *fragments: str) -> None:
    err = err.strip()
    assert code == 2, (code, err)
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for f in fragments:
        assert f in err, err


def _bad(res: subprocess.CompletedProcess, *fragments: str) -> None:
    """A refusal by the installed console script: exit 2, one line."""
    _one_line(res.returncode, res.stderr, *fragments)


def _refused(capsys: pytest.CaptureFixture, args: list[str], *fragments: str) -> None:
    """The same refusal in this process (fast): main's exit code (or the parser's exit) and its stderr."""
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    _one_line(code, capsys.readouterr().err, *fragments)


def _broken_copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_bad_inputs_one_line(random_teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _bad(rlc("info", str(tmp_path / "nope")), "no such folder")
    d = _broken_copy(random_teacher, tmp_path / "nocard")
    (d / "agent.json").unlink()
    _refused(capsys, ["evaluate", str(d)], "agent.json", "missing")
    d = _broken_copy(random_teacher, tmp_path / "noweights")
    (d / "model.safetensors").unlink()
    _refused(capsys, ["export", str(d), "--format", "onnx", "--out", str(tmp_path / "x.onnx")], "model.safetensors",
             "missing")
    assert not (tmp_path / "x.onnx").exists()
    d = _broken_copy(random_teacher, tmp_path / "truncated")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    _refused(capsys, ["info", str(d)], "truncated or corrupt")
    d = _broken_copy(random_teacher, tmp_path / "mismatch")
    card = json.loads((d / "agent.json").read_text())
    card["arch"]["hidden"] = 256
    (d / "agent.json").write_text(json.dumps(card))
    _refused(capsys, ["evaluate", str(d)], "do not fit")
    d = _broken_copy(random_teacher, tmp_path / "format")
    card["arch"]["hidden"] = 512
    card["format"] = 2
    (d / "agent.json").write_text(json.dumps(card))
    _refused(capsys, ["info", str(d)], "unknown card format 2")
    _refused(capsys, ["evaluate", str(random_teacher), "--episodes", "0"], "--episodes")
    _refused(capsys, ["teacher", "train", "--game", "Pongg", "--steps", "10", "--out", str(tmp_path / "t")],
             "closest valid names")
    _refused(capsys, ["teacher", "train", "--game", "pong", "--steps", "-5", "--out", str(tmp_path / "t")], "--steps")
    _refused(capsys, ["teacher", "train", "--out", str(random_teacher), "--steps", "10"], "already holds a run")
    _refused(capsys, ["teacher", "train", "--out", str(tmp_path / "fresh"), "--resume", "--steps", "10"],
             "nothing to resume")
    _refused(capsys, ["export", str(random_teacher), "--format", "onnx", "--out",
                       str(tmp_path / "nodir" / "m.onnx")], "no such directory")
    _refused(capsys, ["teacher", "import", str(tmp_path / "none.zip"), "--game", "pong", "--out",
                       str(tmp_path / "i")], "no such file")


def test_config_file_then_flags(random_teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`--config FILE.yaml` sets what the flags do not (YAML's 1e-3, a string, is read as the number it
    means); flags win; the run writes what it used to OUT/config.yml, which starts the same run again."""
    cfg = tmp_path / "distill.yaml"
    cfg.write_text("student: gmp4\nlr: 1e-3\nbuffer-size: 2000\nenvs: 2\nlearning_starts: 100\neval_every: 0\n"
                   "tb_clip_steps: 0\nsteps: 400\ntemperature: 0.05\ninit: random\n")
    out = tmp_path / "s"
    assert main(["distill", "--teacher", str(random_teacher), "--out", str(out), "--config", str(cfg),
                 "--temperature", "0.02", "--quiet"]) == 0
    used = yaml.safe_load((out / "config.yml").read_text())
    card = json.loads((out / "agent.json").read_text())["training"]["config"]
    assert used == card and used["lr"] == 1e-3 and used["buffer_size"] == 2000 and used["steps"] == 400
    assert used["temperature"] == 0.02  # the flag over the file
    again = tmp_path / "again"
    assert main(["distill", "--teacher", str(random_teacher), "--out", str(again), "--config", str(out / "config.yml"),
                 "--quiet"]) == 0
    assert yaml.safe_load((again / "config.yml").read_text()) == used
    capsys.readouterr()
    for text, message in (("lr: 1e-3\nlearning_rate: 3\n", "unknown settings learning_rate"),
                          ("- lr\n", "is a YAML mapping"), ("lr: fast\n", "--lr must be a finite number, got 'fast'"),
                          ("lr: [1\n", "not valid YAML")):
        cfg.write_text(text)
        assert main(["distill", "--teacher", str(random_teacher), "--out", str(tmp_path / "bad"), "--config",
                     str(cfg)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    cfg.write_text("algo: pqn\nrollout_steps: 8\n")
    assert main(["teacher", "train", "--out", str(tmp_path / "t"), "--config", str(cfg), "--buffer-size", "100"]) == 2
    assert "--buffer-size is not an option of --algo pqn" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "t").exists()


@pytest.mark.parametrize(("blocked", "args", "extra"), [
    ("stable_baselines3", ["bench", "teacher", "--steps", "10"], "bench"),
    ("stable_baselines3", ["bench", "time-to-score", "--trainers", "sb3", "--out", "unused"], "bench"),
    ("onnxruntime", ["bench", "inference"], "onnx"),
    ("captum", ["bench", "localization", "--agents", str(ROOT / "agents/pong/gmp15-w5-15min"), "--frames", "2"], "explain"),
    ("ocatari", ["localize", str(ROOT / "agents/pong/gmp15-w5-15min"), "--frames", "2", "--out", "unused.npz", "--score"], "score"),
])
def test_a_missing_extra_is_named(blocked: str, args: list[str], extra: str, tmp_path: Path) -> None:
    """A command whose optional dependency is not installed says which extra installs it, before any work."""
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"  # as if not installed: import raises ImportError
            "from rl_compress.cli.main import main\n"
            f"sys.exit(main({args!r}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert res.returncode == 2 and f"pip install 'rl-compress[{extra}]'" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())
