"""Students and distillation: spec parsing, each loss, both actors, feature regression,
save / load / resume and the refusals, on real Pong frames with a real (random-init) teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rl_compress.atari.envs import sample_observations
from rl_compress.core.errors import UserError
from rl_compress.core.provenance import machine
from rl_compress.models.agent import load_agent, update_card
from rl_compress.models.networks import build_network, count_params, parse_spec, teacher_arch
from rl_compress.train.distill import (
    DEFAULT_RECYCLE_EVERY,
    DistillConfig,
    average_weights,
    batch_stats,
    check_config,
    dead_channels,
    distill,
    distill_loss,
    distill_update,
    recycle_dead_channels,
    scheduled_lr,
    teacher_tau,
)

TINY = {"steps": 1200, "learning_starts": 400, "buffer_size": 4000, "envs": 4, "batch_size": 32, "train_freq": 2,
            "checkpoint_every": 100_000, "eval_every": 0}


@pytest.mark.parametrize(
    "spec,params",
    [("gmp16", 10_646), ("gmp8", 3_726), ("gmp32", 34_086), ("gmp16-h64", 12_022), ("gmp8-16-32", 8_958),
     ("flat16-fc128", 111_798), ("GMP16", 10_646),
     # a fourth conv 15@5x5 on the 7x7 map: 15*15*25 + 15 = 5,640 more than gmp15's 9,606
     ("gmp15-w5", 15_246), ("gmp8-16-32-w3-h4", 18_170)],
)
def test_spec_params(spec: str, params: int) -> None:
    assert count_params(build_network(parse_spec(spec), 6)) == params


@pytest.mark.parametrize(
    "spec",
    ["gmp", "gmp16-", "gmp0", "flat16", "gmp16-32", "resnet", "gmp16-h0x", "flat16-fc0", "gmp16-w1", "gmp16-w8",
     "gmp16-h8-w3", "flat16-w3-fc64"],
)
def test_bad_specs(spec: str) -> None:
    with pytest.raises(UserError) as e:
        parse_spec(spec)
    assert "valid forms" in str(e.value) and "gmp<C>" in str(e.value)


def test_gmp_is_a_max_pool() -> None:
    torch.manual_seed(0)
    net = build_network(parse_spec("gmp16"), 6)
    x = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    maps = net.conv_maps(x)
    assert maps.shape == (2, 16, 7, 7)
    assert torch.allclose(net.features(x), maps.flatten(2).max(2).values)
    assert torch.allclose(net(x), net.head(maps.flatten(2).max(2).values))


def test_wide_student_pools_a_smaller_map() -> None:
    """-w<K> adds a K x K conv on the 7x7 map: the pool then runs over (8-K)^2 cells that each
    see 36 + 8(K-1) input pixels, and the card's arch rebuilds it; plain specs carry no "wide"."""
    arch = parse_spec("gmp16-w5")
    assert arch["wide"] == 5 and "wide" not in parse_spec("gmp16")
    net = build_network(arch, 6)
    x = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    maps = net.conv_maps(x)
    assert maps.shape == (2, 16, 3, 3)
    assert torch.allclose(net(x), net.head(maps.amax(dim=(2, 3))))
    with pytest.raises(UserError, match="wide"):
        build_network(arch | {"wide": 9}, 6)


@pytest.mark.parametrize("spec", ["gmp8-w5", "gmp8-h16"])
def test_recycling_dead_channels(spec: str) -> None:
    """A channel whose ReLU never fires on real frames gets fresh incoming weights and zero
    outgoing ones (ReDo): the outputs stay the same, Adam forgets those weights, live channels and
    their weights are untouched."""
    torch.manual_seed(0)
    net = build_network(parse_spec(spec), 6)
    x = torch.from_numpy(sample_observations("pong", 32, num_envs=8, warmup=50))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    F.mse_loss(net(x), torch.zeros(32, 6)).backward()
    opt.step()
    convs = [m for m in net.conv if isinstance(m, torch.nn.Conv2d)]
    after_pool = net.hidden[0] if spec.endswith("h16") else net.head
    with torch.no_grad():
        convs[0].bias[2] = -1e4  # dead on every input
        convs[-1].bias[5] = -1e4
    dead = [d.tolist() for d in dead_channels(net, x)]
    assert 2 in dead[0] and 5 in dead[-1]
    with torch.no_grad():
        before = net(x)
    w0, w2 = convs[0].weight.clone(), convs[1].weight.clone()
    counts = recycle_dead_channels(net, x, opt)
    assert counts == [len(d) for d in dead]
    with torch.no_grad():
        assert torch.allclose(net(x), before, atol=1e-6)
    assert convs[0].bias[2] > -1 and not torch.equal(convs[0].weight[2], w0[2])
    live = [c for c in range(8) if c not in dead[0]]
    assert torch.equal(convs[0].weight[live], w0[live])
    assert (convs[1].weight[:, dead[0]] == 0).all() and (after_pool.weight[:, dead[-1]] == 0).all()
    keep = [c for c in range(8) if c not in dead[1]]  # conv2's live channels, from conv1's live ones
    assert torch.equal(convs[1].weight[keep][:, live], w2[keep][:, live])
    assert (opt.state[convs[0].weight]["exp_avg"][2] == 0).all()
    assert (opt.state[after_pool.weight]["exp_avg_sq"][:, 5] == 0).all()
    assert (opt.state[convs[0].weight]["exp_avg"][live] != 0).any()
    with pytest.raises(UserError, match="gmp student"):
        recycle_dead_channels(build_network(parse_spec("flat8-fc16"), 6), x)


def test_recycling_is_on_by_default_for_gmp_students_only() -> None:
    assert DistillConfig().recycle_interval() == DEFAULT_RECYCLE_EVERY == 1000
    assert DistillConfig(student="flat16-fc128").recycle_interval() == 0
    assert DistillConfig(recycle_every=0).recycle_interval() == 0
    assert DistillConfig(recycle_every=250).recycle_interval() == 250
    check_config(DistillConfig(student="flat16-fc128"))  # the default does not refuse a flat student
    with pytest.raises(UserError, match="works on gmp students"):
        check_config(DistillConfig(student="flat16-fc128", recycle_every=5))
    with pytest.raises(UserError, match="must be >= 0"):
        check_config(DistillConfig(recycle_every=-2))


@pytest.mark.parametrize("loss,feature", [("actor-mimic", False), ("kl", False), ("mse", False), ("nll", False),
                                          ("actor-mimic", True)])
def test_distill_update_fits_a_fixed_batch(loss: str, feature: bool) -> None:
    """The update alone, on real Pong states labelled by a real Nature-DQN: repeated steps on one
    batch drive the loss (and the feature regression, when on) down and the agreement up."""
    torch.manual_seed(0)
    teacher = build_network(teacher_arch(), 6).eval()
    x = torch.from_numpy(sample_observations("pong", 64, seed=3))
    with torch.no_grad():
        h_t = teacher.features(x)
        q_t = teacher.from_features(h_t) * 50  # spread the random teacher's values: distinct actions per state
    student = build_network(parse_spec("gmp8"), 6)
    proj = torch.nn.Linear(int(student.features(x[:1]).shape[1]), int(h_t.shape[1])) if feature else None
    params = list(student.parameters()) + (list(proj.parameters()) if proj is not None else [])
    opt = torch.optim.Adam(params, lr=3e-3)
    tau = 0.1 if loss == "actor-mimic" else 0.01
    kw = {"proj": proj, "h_teacher": h_t, "feature_weight": 0.01} if feature else {}
    first = distill_update(student, opt, x, q_t, loss, tau, **kw)
    before = batch_stats(first, q_t)
    for _ in range(150):
        last = distill_update(student, opt, x, q_t, loss, tau, **kw)
    after = batch_stats(last, q_t)
    assert after["loss"] < 0.7 * before["loss"], (before, after)
    assert after["agreement"] > before["agreement"] and after["agreement"] >= 0.6, (before, after)
    assert last.logits.shape == (64, 6) and not last.logits.requires_grad
    if feature:
        assert after["feature"] < before["feature"]
    else:
        assert after["feature"] == 0.0


def test_losses_by_hand() -> None:
    torch.manual_seed(0)
    q = torch.randn(5, 6)
    z = torch.randn(5, 6)
    p = F.softmax(q / 0.1, 1)
    ce = -(p * F.log_softmax(z, 1)).sum(1).mean()
    assert torch.isclose(distill_loss(z, q, "actor-mimic", 0.1), ce)
    assert torch.isclose(distill_loss(q / 0.01, q, "kl", 0.01), torch.tensor(0.0), atol=1e-5)
    assert distill_loss(z, q, "kl", 0.01) > 0
    # at one temperature kl and actor-mimic differ by the target's entropy, a constant: same gradient
    grads = []
    for loss in ("kl", "actor-mimic"):
        zz = z.clone().requires_grad_(True)
        distill_loss(zz, q, loss, 0.05).backward()
        grads.append(zz.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and grads[0].abs().max() > 1e-3
    assert torch.isclose(distill_loss(z, q, "mse", 1.0), ((z - q) ** 2).mean())
    assert torch.isclose(distill_loss(z, q, "nll", 1.0), F.cross_entropy(z, q.argmax(1)))


@pytest.fixture()
def sharp_teacher(random_teacher: Path) -> Path:
    """The random-init teacher with its head scaled x50, so that its Q-values differ between
    actions as a trained teacher's do (a random head gives a nearly uniform softmax)."""
    from rl_compress.models.agent import save_agent

    agent = load_agent(random_teacher)
    with torch.no_grad():
        agent.net.head.weight.mul_(50.0)
        agent.net.head.bias.mul_(50.0)
    save_agent(random_teacher, agent.net, agent.card)
    return random_teacher


@pytest.mark.parametrize(
    "loss,actor,feature_weight,precision",
    [("actor-mimic", "student", 0.0, "fp32"), ("kl", "teacher", 0.0, "fp32"), ("mse", "student", 0.0, "fp32"),
     ("nll", "teacher", 0.0, "fp32"), ("actor-mimic", "student", 0.01, "fp32"), ("actor-mimic", "student", 0.01, "bf16")],
)
def test_distill_learns_the_teacher(sharp_teacher: Path, tmp_path: Path, loss: str, actor: str,
                                    feature_weight: float, precision: str, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = DistillConfig(student="gmp8", loss=loss, actor=actor, feature_weight=feature_weight, precision=precision,
                        **TINY)
    out = tmp_path / "student"
    card = distill(sharp_teacher, cfg, out, tensorboard=tmp_path / "tb", show_progress=False)
    assert card["kind"] == "student" and card["params"] == 3_726 and card["game"] == "pong"
    assert card["teacher"]["params"] == 1_687_206 and len(card["teacher"]["sha256"]) == 64
    assert card["training"]["updates"] == (1200 - 400) // 2
    student = load_agent(out).net
    teacher = load_agent(sharp_teacher).net
    torch.manual_seed(cfg.seed)
    init = build_network(parse_spec("gmp8"), 6)
    x = torch.from_numpy(sample_observations("pong", 128, seed=99, warmup=50))
    with torch.no_grad():
        q = teacher(x)
        # the softmax losses are measured as KL (cross-entropy less the teacher's entropy)
        measure = "kl" if loss == "actor-mimic" else loss
        tau = teacher_tau(cfg, load_agent(sharp_teacher).card)
        before = float(distill_loss(init(x), q, measure, tau))
        after = float(distill_loss(student(x), q, measure, tau))
        agree = float((student(x).argmax(1) == q.argmax(1)).float().mean())
        agree0 = float((init(x).argmax(1) == q.argmax(1)).float().mean())
    assert after < 0.7 * before, (before, after)
    assert agree > agree0 or agree == 1.0, (agree0, agree)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb" / "student"))  # one folder per run, named after it
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in ("losses/distill", "charts/agreement", "charts/entropy", "charts/SPS", "charts/logit_std",
                "time/fps", "train/loss", "train/learning_rate"):
        assert tag in tags, tag
    if feature_weight:
        assert all(e.value > 0 for e in acc.Scalars("losses/feature"))
    assert all(e.value > 1e-6 for e in acc.Scalars("charts/logit_std"))
    assert "warning" not in capsys.readouterr().err
    assert card["training"]["config"]["precision"] == precision
    assert all(p.dtype == torch.float32 for p in student.parameters())


def test_a_collapsed_student_is_reported(sharp_teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Adam at lr 1 kills every unit of the student within a few hundred updates: its outputs no
    longer depend on the input, TensorBoard shows a zero spread and the user is told once."""
    cfg = DistillConfig(student="gmp8", lr=1.0, recycle_every=0, **TINY)
    distill(sharp_teacher, cfg, tmp_path / "student", tensorboard=tmp_path / "tb", show_progress=False)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "same outputs" in err and "--lr" in err
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb" / "student"))
    acc.Reload()
    assert acc.Scalars("charts/logit_std")[-1].value < 1e-6
    assert acc.Scalars("charts/dead_channels")[-1].value > 0.5
    assert all(e.value == 0 for e in acc.Scalars("charts/recycled_channels"))
    # with --recycle-every the distiller gives the dead channels fresh weights as it goes
    cfg = DistillConfig(student="gmp8", lr=1.0, recycle_every=20, **TINY)
    card = distill(sharp_teacher, cfg, tmp_path / "recycled", tensorboard=tmp_path / "tb2", show_progress=False)
    assert card["training"]["config"]["recycle_every"] == 20 and card["training"]["recycle_every_used"] == 20
    acc = EventAccumulator(str(tmp_path / "tb2" / "recycled"))
    acc.Reload()
    assert acc.Scalars("charts/recycled_channels")[-1].value > 0


def test_eval_resume_and_refusals(random_teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    cfg = DistillConfig(student="gmp8", **{**TINY, "steps": 800, "eval_every": 800, "eval_episodes": 1})
    card = distill(random_teacher, cfg, out, show_progress=False, tensorboard=tmp_path / "tb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb" / "s"), size_guidance={"images": 0})
    acc.Reload()
    assert "images/overlay" in acc.Tags()["images"] and "videos/overlay" in acc.Tags()["images"]
    clip = acc.Images("videos/overlay")[0]
    assert clip.encoded_image_string[:6] == b"GIF89a" and clip.width == 320 and clip.height == 448
    for tag in ("eval/student_return_mean", "eval/teacher_return_mean"):
        assert tag in acc.Tags()["scalars"]
    ev = card["training"]["last_eval"]
    assert ev["step"] == 800 and -21 <= ev["mean"] <= 21 and -21 <= ev["teacher_mean"] <= 21
    first_updates = card["training"]["updates"]
    update_card(out, evaluation={"mean": -21.0, "episodes": 1})
    assert card["training"]["machines"] == [machine()]
    # a checkpoint from before machines were recorded: the first leg stands as unrecorded
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    del ckpt["machines"]
    torch.save(ckpt, out / "checkpoint.pt")
    card = distill(random_teacher, DistillConfig(student="gmp8", steps=1200), out, resume=True, show_progress=False)
    assert card["training"]["machines"] == ["unrecorded", machine()]
    assert "evaluation" not in card  # it was made of the weights before the resume
    # resume refills the memory (learning_starts steps) before updates go on
    assert card["training"]["steps"] == 1200 and card["training"]["updates"] == first_updates
    assert card["training"]["config"]["buffer_size"] == 4000
    with pytest.raises(UserError, match="already holds a run"):
        distill(random_teacher, DistillConfig(student="gmp8", **TINY), out, show_progress=False)
    with pytest.raises(UserError, match="not 'gmp16'"):
        distill(random_teacher, DistillConfig(student="gmp16", steps=2000), out, resume=True, show_progress=False)
    other = tmp_path / "other_teacher"
    import shutil

    shutil.copytree(random_teacher, other)
    net = load_agent(other).net
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    from rl_compress.models.agent import save_agent

    save_agent(other, net, json.loads((other / "agent.json").read_text()))
    with pytest.raises(UserError, match="another teacher"):
        distill(other, DistillConfig(student="gmp8", steps=2000), out, resume=True, show_progress=False)
    for bad in ({"temperature": -1.0}, {"loss": "hinge"}, {"actor": "both"}, {"steps": 0}, {"student": "cnn"},
                {"precision": "fp16"}):
        with pytest.raises(UserError):
            distill(random_teacher, DistillConfig(**bad), tmp_path / "bad", show_progress=False)
    with pytest.raises(UserError, match="no such folder"):
        distill(tmp_path / "nope", DistillConfig(), tmp_path / "bad", show_progress=False)


def test_max_wall_time_stops_evaluates_and_resumes(random_teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "timed"
    cfg = DistillConfig(student="gmp4", steps=10_000_000, max_wall_time=6.0, eval_every=0, eval_episodes=1,
                        tb_clip_steps=0, learning_starts=200, buffer_size=2000, envs=2, init="random")
    card = distill(random_teacher, cfg, out, show_progress=False)
    tr = card["training"]
    assert tr["stopped"] == "max_wall_time" and not tr["finished"]
    assert 0 < tr["steps"] < 10_000_000 and 6.0 <= tr["wall_time_s"] < 60
    assert tr["last_eval"]["step"] == tr["steps"] and tr["eval_history"][-1] == tr["last_eval"]  # evaluated at the stop
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == tr["steps"]
    with pytest.raises(UserError, match="already trained"):
        distill(random_teacher, DistillConfig(student="gmp4", steps=10_000_000, max_wall_time=6.0), out, resume=True,
                show_progress=False)
    more = distill(random_teacher, DistillConfig(student="gmp4", steps=10_000_000, max_wall_time=tr["wall_time_s"] + 4),
                   out, resume=True, show_progress=False)["training"]
    assert more["steps"] > tr["steps"] and more["stopped"] == "max_wall_time" and len(more["eval_history"]) == 2


def test_stop_at_retention_stops_at_the_first_evaluation_that_reaches_it(tmp_path: Path) -> None:
    """A run that starts from the shipped 15-minute Pong student (retention 0.96 on 30 games) meets a
    0.5 target at its first evaluation and stops there; a resume with a lower target goes on to its end."""
    root = Path(__file__).resolve().parents[1]
    teacher, shipped = root / "agents" / "pong" / "teacher", root / "agents" / "pong" / "gmp15-w5-15min"
    out = tmp_path / "target"
    small = {"eval_every": 1000, "eval_episodes": 1, "tb_clip_steps": 0, "learning_starts": 400, "buffer_size": 4000,
             "envs": 4, "batch_size": 32, "checkpoint_every": 100_000, "init_from": str(shipped)}
    card = distill(teacher, DistillConfig(steps=10_000_000, stop_at_retention=0.5, **small), out, show_progress=False)
    tr = card["training"]
    assert tr["stopped"] == "target" and not tr["finished"] and tr["steps"] == 1000
    assert len(tr["eval_history"]) == 1 and tr["last_eval"]["step"] == 1000 and tr["last_eval"]["retention"] >= 0.5
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 1000
    # a target met at the run's last step: the run reached its env steps, so it is finished, not stopped
    more = distill(teacher, DistillConfig(steps=2000, stop_at_retention=0.05, **small), out, resume=True,
                   show_progress=False)["training"]
    assert more["last_eval"]["retention"] >= 0.05 and more["finished"] and more["stopped"] is None
    assert more["steps"] == 2000 and len(more["eval_history"]) == 2
    with pytest.raises(UserError, match="^stop_at_retention needs periodic evaluations: eval_every > 0"):
        check_config(DistillConfig(stop_at_retention=0.9, eval_every=0))
    with pytest.raises(UserError, match="^stop_at_retention must be >= 0"):
        check_config(DistillConfig(stop_at_retention=-0.1))


def test_lr_schedules_fall_to_zero_over_the_budget() -> None:
    steps_only = DistillConfig(lr=1e-3, steps=1000, lr_schedule="linear")
    assert scheduled_lr(steps_only, 0, 5.0) == pytest.approx(1e-3)
    assert scheduled_lr(steps_only, 250, 500.0) == pytest.approx(7.5e-4)  # no wall budget: steps alone count
    assert scheduled_lr(steps_only, 1000, 0.0) == 0.0
    timed = DistillConfig(lr=1e-3, steps=1000, max_wall_time=100.0, lr_schedule="cosine")
    assert scheduled_lr(timed, 0, 0.0) == pytest.approx(1e-3)
    assert scheduled_lr(timed, 100, 50.0) == pytest.approx(5e-4)  # the wall time is further along than the steps
    assert scheduled_lr(timed, 500, 10.0) == pytest.approx(5e-4)  # and here the steps
    assert scheduled_lr(timed, 100, 150.0) == 0.0  # past the budget (a resume that asks for no more)
    assert scheduled_lr(DistillConfig(lr=3e-4), 999, 1e6) == 3e-4  # constant, the default
    with pytest.raises(UserError, match="^lr_schedule must be one of constant, linear, cosine"):
        distill(Path("nowhere"), DistillConfig(lr_schedule="step"), Path("nowhere-out"), show_progress=False)


def test_a_scheduled_run_ends_at_a_low_learning_rate(random_teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    card = distill(random_teacher, DistillConfig(student="gmp8", lr_schedule="linear", lr=1e-3, init="random", **TINY),
                   out, show_progress=False)
    assert card["training"]["config"]["lr_schedule"] == "linear"
    adam = torch.load(out / "checkpoint.pt", weights_only=True)["optimizer"]
    last_lr = adam["param_groups"][0]["lr"]
    # the last update came at the last env step: the lr fell by (1 - 1196 / 1200) at most
    assert 0 < last_lr <= 1e-3 * (1 - 1196 / 1200) + 1e-12


def test_a_moving_average_moves_one_minus_decay_of_the_way() -> None:
    net, average = build_network(parse_spec("gmp8"), 6), build_network(parse_spec("gmp8"), 6)
    before = [p.detach().clone() for p in average.parameters()]
    average_weights(average, net, 0.9)
    for old, new, target in zip(before, average.parameters(), net.parameters()):
        assert torch.allclose(new, old + 0.1 * (target.detach() - old), atol=1e-6)
    assert count_params(average.requires_grad_(False)) == count_params(net)  # frozen weights still count


def test_an_averaged_run_saves_and_resumes_its_average(random_teacher: Path, tmp_path: Path) -> None:
    """With --ema the agent saved (and evaluated) is the moving average, not the trained weights; the
    average goes on from the checkpoint on resume; a bad decay is refused."""
    out = tmp_path / "s"
    cfg = DistillConfig(student="gmp8", init="random", ema=0.99, **TINY)
    distill(random_teacher, cfg, out, show_progress=False)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    saved = load_agent(out).net.state_dict()
    for name, value in saved.items():
        assert torch.equal(value, ckpt["student_average"][name])
    assert any(not torch.equal(saved[k], ckpt["student"][k]) for k in saved)
    # the memory refills for learning_starts (400 steps) before the resumed leg's first update
    card = distill(random_teacher, DistillConfig(student="gmp8", steps=2000), out, resume=True, show_progress=False)
    assert card["training"]["config"]["ema"] == 0.99 and card["params"] == count_params(load_agent(out).net) > 0
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)
    learner, average = resumed["student"], resumed["student_average"]
    moved = [(average[k] - ckpt["student_average"][k]).abs().max() for k in average]
    assert max(moved) > 0 and any(not torch.equal(average[k], learner[k]) for k in average)
    with pytest.raises(UserError, match=r"^ema must be in \[0, 1\)"):
        distill(random_teacher, DistillConfig(ema=1.0), tmp_path / "bad", show_progress=False)
