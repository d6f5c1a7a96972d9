"""The EAT authors' released actors (authors_eat / authors_dsac / authors_sac) without their
files: exact state-dict layout, observation, decoding, loading errors, a full episode."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from eatbench.engine.loop import Decision  # noqa: E402
from eatbench.experiment.compose import compose_experiment  # noqa: E402
from eatbench.experiment.runner import build_engine, run_experiment  # noqa: E402
from eatbench.schedulers import SCHEDULERS  # noqa: E402
from eatbench.schedulers.authors.decode import decode, integer_steps, read_action, release_placement  # noqa: E402
from eatbench.schedulers.authors.networks import DiffusionChain, NoiseNet, ReleaseActor  # noqa: E402
from eatbench.schedulers.authors.observation import ReleaseObservation, release_group_ids  # noqa: E402
from eatbench.schedulers.rl.checkpoint import CheckpointError  # noqa: E402

torch.set_num_threads(1)

# The actor entries of the release's checkpoints (keys after "actor." and their shapes), as
# read from 'EAT Simu/res_policy/2_0.05_0.05_4_10_[1, 2, 4]/*_policy.pth' of zzf1955/EAT.
_CHAIN_BUFFERS = [
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
]
_DSAC = {
    "sigma_param": (12, 1),
    **{f"preprocess.{b}": (10,) for b in _CHAIN_BUFFERS},
    "preprocess.model.time_mlp.1.weight": (32, 16),
    "preprocess.model.time_mlp.1.bias": (32,),
    "preprocess.model.time_mlp.3.weight": (16, 32),
    "preprocess.model.time_mlp.3.bias": (16,),
    "preprocess.model.mid_layer.0.weight": (256, 314),
    "preprocess.model.mid_layer.0.bias": (256,),
    "preprocess.model.mid_layer.2.weight": (256, 256),
    "preprocess.model.mid_layer.2.bias": (256,),
    "preprocess.model.mid_layer.4.weight": (256, 256),
    "preprocess.model.mid_layer.4.bias": (256,),
    "mu.model.0.weight": (12, 256),
    "mu.model.0.bias": (12,),
}
RELEASE_KEYS = {
    "eat": {
        **_DSAC,
        **{
            f"preprocess.model.state_attention.{p}.{w}": (3, 3) if w == "weight" else (3,)
            for p in ("query", "key", "value")
            for w in ("weight", "bias")
        },
    },
    "dsac": _DSAC,
    "sac": {
        "sigma_param": (12, 1),
        "preprocess.model.model.0.weight": (256, 42),
        "preprocess.model.model.0.bias": (256,),
        "preprocess.model.model.2.weight": (256, 256),
        "preprocess.model.model.2.bias": (256,),
        "mu.model.0.weight": (12, 256),
        "mu.model.0.bias": (12,),
    },
}
FILE = {"eat": "adsac_policy.pth", "dsac": "dsac_policy.pth", "sac": "sac_policy.pth"}


def _release_blob(kind: str, seed: int = 0, execute_bias: float | None = 4.0) -> dict:
    """A tianshou-SACPolicy-like state dict: randomly initialised actor + a critic entry."""
    torch.manual_seed(seed)
    actor = ReleaseActor(kind).state_dict()
    if execute_bias is not None:  # make the random actor launch (execute > 0) the head of the queue;
        w, b = actor["mu.model.0.weight"], actor["mu.model.0.bias"]  # its steps stay the network's
        w[0], b[0] = 0.0, execute_bias
        w[2:], b[2:], b[2] = 0.0, 0.0, execute_bias
    blob = {f"actor.{k}": v.clone() for k, v in actor.items()}
    blob["critic1.last.model.0.weight"] = torch.zeros(1, 256)  # the release also holds critics
    return blob


def _save(tmp_path, blob: dict, name: str) -> str:
    path = tmp_path / name
    torch.save(blob, path)
    return str(path)


def _cfg(*overrides: str):
    return compose_experiment(list(overrides))


# -- networks -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(RELEASE_KEYS))
def test_network_has_the_release_keys_and_shapes(kind):
    got = {k: tuple(v.shape) for k, v in ReleaseActor(kind).state_dict().items()}
    assert got == RELEASE_KEYS[kind]


@pytest.mark.parametrize("kind", sorted(RELEASE_KEYS))
def test_random_release_state_dict_loads_strictly(kind):
    blob = _release_blob(kind, seed=3)
    actor = {k[6:]: v for k, v in blob.items() if k.startswith("actor.")}
    net = ReleaseActor(kind)
    net.load_state_dict(actor, strict=True)
    for k, v in net.state_dict().items():
        assert torch.equal(v, actor[k])


def test_chain_buffers_follow_the_linear_ddpm_schedule():
    chain = DiffusionChain(NoiseNet(42, attention=False))
    betas = np.linspace(1e-4, 2e-2, 10)
    ac = np.cumprod(1 - betas)
    prev = np.concatenate([[1.0], ac[:-1]])
    np.testing.assert_allclose(chain.betas.numpy(), betas, rtol=1e-6)
    np.testing.assert_allclose(
        chain.posterior_variance.numpy(), betas * (1 - prev) / (1 - ac), rtol=1e-3
    )  # float32, as the release
    np.testing.assert_allclose(
        chain.posterior_mean_coef2.numpy(), (1 - prev) * np.sqrt(1 - betas) / (1 - ac), rtol=1e-3
    )
    assert chain.posterior_variance[0] == 0.0


def test_chain_sampling_by_hand_with_a_zero_noise_net():
    """With a noise network that predicts 0, each reverse step is x <- c_i x + sigma_i z_i
    (z_i drawn after x_T, one per step; the last one unused); check against that by hand."""
    net = NoiseNet(42, attention=True)
    for p in net.mid_layer[-1].parameters():
        torch.nn.init.zeros_(p)
    chain = DiffusionChain(net)
    rows = torch.rand(1, 14, 3)
    out = chain(rows, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    x = torch.randn((1, 256), generator=g).double()
    betas = np.linspace(1e-4, 2e-2, 10)
    ac = np.cumprod(1 - betas)
    prev = np.concatenate([[1.0], ac[:-1]])
    for i in reversed(range(10)):
        coef = betas[i] * np.sqrt(prev[i]) / (1 - ac[i]) / np.sqrt(ac[i]) + (1 - prev[i]) * np.sqrt(1 - betas[i]) / (
            1 - ac[i]
        )
        z = torch.randn((1, 256), generator=g).double()
        sigma = math.sqrt(betas[i] * (1 - prev[i]) / (1 - ac[i]))
        x = coef * x + (sigma * z if i > 0 else 0.0)
    torch.testing.assert_close(out.double(), x, rtol=1e-3, atol=1e-3)  # float32 chain


def test_actor_output_is_tanh_squashed_twice():
    net = ReleaseActor("sac")
    with torch.no_grad():
        net.mu.model[0].bias.fill_(50.0)
    out = net(torch.rand(2, 14, 3))
    torch.testing.assert_close(out, torch.full((2, 12), math.tanh(1.0)))


# -- observation ----------------------------------------------------------------------
def _engine(ks: list[int], *overrides: str):
    cfg = _cfg("cluster=paper4", "workload=paper", "workload.rate=0.01", "engine.decision_mode=slotted", *overrides)
    engine = build_engine(cfg)
    for task, k in zip(engine.tasks, ks, strict=False):
        task.k = k
    assert engine.next_decision()
    return engine


def _wait_until(engine, t: float) -> None:
    while engine.now < t - 1e-9:
        engine.apply(None)
        assert engine.next_decision()


def test_observation_at_the_start():
    engine = _engine([2, 1, 4, 1, 2, 4, 1, 1, 2, 4])
    obs = ReleaseObservation(10, 4, stamp_lag=0.1).encode(engine.view)
    assert obs.shape == (14, 3) and obs.dtype == np.float32
    # ten initial tasks: stamp 0 (the release never stamps them), size 1, their k
    np.testing.assert_array_equal(obs[:10], [[0, 1, k] for k in [2, 1, 4, 1, 2, 4, 1, 1, 2, 4]])
    np.testing.assert_array_equal(obs[10:], [[0, 0, 1]] * 4)  # idle, cold


def test_observation_after_launches_by_hand():
    engine = _engine([2, 1, 4, 1, 2, 4, 1, 1, 2, 4])
    ids = [t.id for t in engine.queue]
    engine.apply(Decision(ids[0], 20, (0, 1)))  # k=2 cold: 0.15625 * 20 + 24 = 27.125 s
    engine.apply(Decision(ids[1], 10, (2,)))  # k=1 cold: 0.315 * 10 + 24 = 27.15 s
    assert engine.next_decision()
    obs = ReleaseObservation(10, 4, stamp_lag=0.1).encode(engine.view)
    np.testing.assert_allclose(obs[10:], [[27.125, 1, 0], [27.125, 1, 0], [27.15, 2, 0], [0, 0, 1]], rtol=1e-6)
    # the queue moved up: the third initial task (k=4) is now the first row, 2 zero rows at the end
    np.testing.assert_array_equal(obs[:8, 2], [4, 1, 2, 4, 1, 1, 2, 4])
    np.testing.assert_array_equal(obs[8:10], 0)
    _wait_until(engine, 5.0)
    obs = ReleaseObservation(10, 4, stamp_lag=0.1).encode(engine.view)
    np.testing.assert_allclose(obs[10:, 0], [22.125, 22.125, 22.15, 0], rtol=1e-5)


def test_group_ids_skip_the_cold_bucket():
    """Groups (0,1) and (2,3) warm and idle; a k=1 launch on server 0 dissolves (0,1):
    buckets in server order are {0}, cold {1}, {2,3} -> ids 1, 0, 3, 3 (as the release)."""
    engine = _engine([2, 2, 1])
    ids = [t.id for t in engine.queue]
    engine.apply(Decision(ids[0], 20, (0, 1)))
    engine.apply(Decision(ids[1], 20, (2, 3)))
    assert engine.next_decision()
    assert release_group_ids(engine.view) == [1, 1, 2, 2]
    _wait_until(engine, 27.2)  # both done: warm and idle
    assert release_group_ids(engine.view) == [1, 1, 2, 2]
    obs = ReleaseObservation(10, 4, stamp_lag=0.1).encode(engine.view)
    np.testing.assert_array_equal(obs[10:], [[0, 1, 1], [0, 1, 1], [0, 2, 1], [0, 2, 1]])
    queued = [t for t in engine.queue if t.k == 1][0]
    engine.apply(Decision(queued.id, 20, (0,)))
    assert release_group_ids(engine.view) == [1, 0, 3, 3]


def test_arrival_stamps_use_the_release_clock():
    obs = ReleaseObservation(10, 4, stamp_lag=0.1)
    assert obs.arrival_stamp(0.0) == 0.0  # queued at the start
    assert obs.arrival_stamp(12.3) == pytest.approx(13.2)  # drawn in the slot [13.2, 13.3) of the release
    assert ReleaseObservation(10, 4, stamp_lag=0.0).arrival_stamp(12.3) == pytest.approx(13.3)
    engine = _engine([1] * 10, "workload.rate=0.11")
    _wait_until(engine, 60.0)
    late = [t for t in engine.queue if t.arrival > 0]
    assert late, "an arrival within 60 s at 0.11/s (seeded)"
    rows = ReleaseObservation(10, 4, stamp_lag=0.1).encode(engine.view)
    visible = list(engine.queue)[:10]
    for i, t in enumerate(visible):
        assert rows[i, 0] == pytest.approx(0.0 if t.arrival == 0 else t.arrival + 0.9)


# -- decoding -------------------------------------------------------------------------
def test_read_action_by_hand():
    a = np.array([0.2, 0.25, -1, 0.1, 0.3, 0.3, 0, 0, 0, 0, 0, 0])
    c = read_action(a, 10)
    assert c.execute and c.steps == pytest.approx(20.0) and c.slot == 2  # first of the tied maxima
    assert read_action(np.r_[0.0, a[1:]], 10).execute  # u = 0.5 executes
    assert not read_action(np.r_[-0.01, a[1:]], 10).execute
    with pytest.raises(ValueError, match=r"action shape \(11,\) is invalid; allowed: \(12,\)"):
        read_action(a[:11], 10)


def test_integer_steps():
    assert integer_steps(12.5, 1, 32) == 13  # half up
    assert integer_steps(12.49, 1, 32) == 12
    assert integer_steps(0.0, 1, 32) == 1
    assert integer_steps(32.0, 1, 32) == 32


def test_decode_by_hand():
    engine = _engine([2, 1, 4, 1, 2, 4, 1, 1, 2, 4])
    queue = list(engine.queue)
    a = np.zeros(12)
    a[0], a[1] = 0.5, -0.5  # execute; u1 = 0.25 -> 8 steps
    a[2 + 2] = 1.0  # slot 2: the k=4 task
    assert decode(engine.view, a, 10) == Decision(queue[2].id, 8, (0, 1, 2, 3))
    a[0] = -0.5
    assert decode(engine.view, a, 10) is None  # do not execute
    a[0] = 0.5
    engine.apply(Decision(queue[0].id, 20, (0, 1)))
    a[2:] = 0
    a[2 + 1] = 1.0  # the queue moved up: slot 1 is now the k=4 task
    assert decode(engine.view, a, 10) is None  # k=4 with 2 available: invalid, a wait
    a[2 + 0] = 1.0  # tie between slots 0 and 1: slot 0, the k=1 task
    assert decode(engine.view, a, 10) == Decision(queue[1].id, 8, (2,))


def test_decode_slot_past_the_queue_is_a_wait():
    engine = _engine([1, 1], "workload.initial_queue=2")
    assert len(engine.queue) == 2
    a = np.zeros(12)
    a[0], a[2 + 5] = 1.0, 1.0
    assert decode(engine.view, a, 10) is None
    a[2 + 1] = 2.0
    assert decode(engine.view, a, 10) == Decision(engine.queue[1].id, 16, (0,))


def test_placement_prefers_an_available_group_of_exactly_k():
    engine = _engine([2, 1, 1, 1, 2, 4])
    ids = [t.id for t in engine.queue]
    engine.apply(Decision(ids[0], 20, (0, 1)))
    engine.apply(Decision(ids[1], 20, (2,)))
    assert engine.next_decision()
    _wait_until(engine, 30.5)  # all idle (27.125 s, 30.3 s): groups {0,1}, {2}; server 3 cold
    assert release_placement(engine.view, 1, "sd14") == (2,)
    assert release_placement(engine.view, 2, "sd14") == (0, 1)
    assert release_placement(engine.view, 4, "sd14") == (0, 1, 2, 3)
    assert release_placement(engine.view, 2, "other-model") == (0, 1)  # first k available
    for k in (1, 2, 4):
        assert release_placement(engine.view, k, "sd14") == engine.default_servers(k, "sd14")


# -- scheduler: loading and errors ----------------------------------------------------
@pytest.mark.parametrize("kind", sorted(RELEASE_KEYS))
def test_full_paper4_episode_and_provenance(tmp_path, kind):
    path = _save(tmp_path, _release_blob(kind), FILE[kind])
    cfg = _cfg(
        f"scheduler=authors_{kind}",
        f"scheduler.checkpoint={path}",
        "workload.rate=0.07",
        f"output.root={tmp_path / 'out'}",
    )
    assert cfg.engine.decision_mode != "event"  # the release's timing (slotted until `release` exists)
    res = run_experiment(cfg, write=True)
    assert res.summary["tasks"] == 32 and res.summary["tasks_done"] == 32
    assert all(1 <= r.steps <= 32 and r.k in (1, 2, 4) for r in res.records)
    payload = json.loads((res.out_dir / "summary.json").read_text())
    want = hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert payload["scheduler_provenance"]["checkpoint_sha256"] == want
    assert payload["scheduler_provenance"]["checkpoint"] == path


def test_same_seed_same_noise_same_schedule(tmp_path):
    path = _save(tmp_path, _release_blob("eat", execute_bias=None), "adsac_policy.pth")
    runs = []
    for seed in (0, 0, 1):
        cfg = _cfg("scheduler=authors_eat", f"scheduler.checkpoint={path}", "workload.n_tasks=12", f"seed={seed}")
        runs.append([(r.start, r.servers, r.steps) for r in run_experiment(cfg, write=False).records])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_wrong_kind_fails_clearly(tmp_path):
    path = _save(tmp_path, _release_blob("sac"), "sac_policy.pth")
    cfg = _cfg("scheduler=authors_eat", f"scheduler.checkpoint={path}")
    with pytest.raises(CheckpointError, match=r"holds the release's SAC actor, not EAT .*use scheduler=authors_sac"):
        run_experiment(cfg, write=False)
    path = _save(tmp_path, _release_blob("eat"), "adsac_policy.pth")
    cfg = _cfg("scheduler=authors_dsac", f"scheduler.checkpoint={path}")
    with pytest.raises(CheckpointError, match=r"EAT \(adsac\) actor, not DSAC"):
        run_experiment(cfg, write=False)


def test_wrong_shape_fails_clearly(tmp_path):
    blob = _release_blob("eat")
    blob["actor.preprocess.model.mid_layer.2.weight"] = torch.zeros(256, 128)
    path = _save(tmp_path, blob, "bad.pth")
    with pytest.raises(
        CheckpointError, match=r"(?s)weights do not match the release's EAT \(adsac\) actor .*mid_layer.2.weight"
    ):
        run_experiment(_cfg("scheduler=authors_eat", f"scheduler.checkpoint={path}"), write=False)
    path = _save(tmp_path, _release_blob("eat"), "adsac_policy.pth")
    cfg = _cfg("scheduler=authors_eat", f"scheduler.checkpoint={path}", "engine.window=8")
    with pytest.raises(CheckpointError, match=r"queue of 10 rows; engine.window=8 is invalid for it; allowed: 10"):
        run_experiment(cfg, write=False)
    blob = _release_blob("sac")
    blob["actor.preprocess.model.model.0.weight"] = torch.zeros(256, 45)
    path = _save(tmp_path, blob, "bad_sac.pth")
    with pytest.raises(CheckpointError, match=r"trained on a 45-number state; this run's state has 42"):
        run_experiment(_cfg("scheduler=authors_sac", f"scheduler.checkpoint={path}"), write=False)
    path = _save(tmp_path, _release_blob("dsac"), "dsac_policy.pth")
    with pytest.raises(CheckpointError, match=r"this run's state has 54 .*cluster=paper4"):
        run_experiment(_cfg("scheduler=authors_dsac", "cluster=paper8", f"scheduler.checkpoint={path}"), write=False)


def test_not_a_release_checkpoint_fails_clearly(tmp_path):
    cases = {
        "missing.pth": (None, r"does not exist; .*scheduler.checkpoint=/path/to/adsac_policy.pth .*zzf1955/EAT"),
        "junk.pth": (b"not a torch file", r"is unreadable"),
        "critics.pth": ({"critic1.w": torch.zeros(2)}, r"holds no release actor \(no 'actor\.\*' keys"),
        "ours.pt": ({"format": "eatbench-policy/1", "arch": "eat"}, r"is an eatbench policy .*use scheduler=eat"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            torch.save(content, path)
        with pytest.raises(CheckpointError, match=message):
            run_experiment(_cfg("scheduler=authors_eat", f"scheduler.checkpoint={path}"), write=False)


def test_no_checkpoint_fails_clearly(monkeypatch):
    monkeypatch.delenv("EATBENCH_EAT_RELEASE", raising=False)
    with pytest.raises(CheckpointError, match=r"set scheduler.checkpoint=/path/to/dsac_policy.pth"):
        run_experiment(_cfg("scheduler=authors_dsac"), write=False)


def test_folder_and_environment_default(tmp_path, monkeypatch):
    path = _save(tmp_path, _release_blob("dsac"), "dsac_policy.pth")
    monkeypatch.setenv("EATBENCH_EAT_RELEASE", str(tmp_path))
    cfg = _cfg("scheduler=authors_dsac", "workload.n_tasks=12")
    assert cfg.scheduler.checkpoint == str(tmp_path)
    res = run_experiment(cfg, write=False)
    assert res.meta["scheduler_provenance"]["checkpoint"] == path
    assert res.summary["tasks_done"] == 12
    with pytest.raises(CheckpointError, match=r"adsac_policy.pth' does not exist"):
        run_experiment(_cfg("scheduler=authors_eat"), write=False)


def test_registered_with_configs(monkeypatch):
    monkeypatch.delenv("EATBENCH_EAT_RELEASE", raising=False)
    for kind in RELEASE_KEYS:
        assert f"authors_{kind}" in SCHEDULERS
        cfg = _cfg(f"scheduler=authors_{kind}")
        assert cfg.scheduler.name == f"authors_{kind}" and cfg.scheduler.checkpoint is None


def test_release_clock_stamps_are_the_arrivals_themselves():
    from eatbench.schedulers.authors.observation import ReleaseObservation

    obs = ReleaseObservation(10, 4, stamp_lag=0.1)
    assert obs.arrival_stamp(0.0, release_clock=True) == 0.0  # queued at the start: the default stamp
    assert obs.arrival_stamp(4.1, release_clock=True) == 4.1  # the engine already runs on the release clock
    assert obs.arrival_stamp(4.1) == pytest.approx(5.0)  # event/slotted: eatbench t + 1 s - one slot
