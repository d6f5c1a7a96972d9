"""The gpu backend through its real worker processes, with the tiny random pipeline on cpu.

One backend with two cpu servers (gloo between them) is shared by the tests of this module
to keep the run short; every test says explicitly whether its jobs are cold.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from eatbench.backends import BACKENDS  # noqa: E402
from eatbench.backends.gpu import GpuBackend  # noqa: E402
from eatbench.backends.gpu.backend import BackendParamError  # noqa: E402
from eatbench.backends.gpu.patch_parallel import partition, psnr, row_bounds  # noqa: E402
from eatbench.backends.gpu.pipelines import save_tiny_pipeline, unet_config  # noqa: E402
from eatbench.core.tasks import Task  # noqa: E402
from eatbench.engine.backend import BackendContext, Job, JobResult  # noqa: E402
from eatbench.engine.cluster import Cluster  # noqa: E402

RES = 64  # pixels; the tiny VAE halves it: 32 latent rows


def _cluster(n: int) -> Cluster:
    return Cluster.uniform(n, "cpu")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="module")
def tiny_xl_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny_sdxl"), arch="tiny-sdxl")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    from eatbench.backends.gpu.quality import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("gpu_out"))


@pytest.fixture(scope="module")
def backend(tiny_dir: str, tiny_xl_dir: str, clip_dir: str, out_dir: str):
    ctx = BackendContext(cluster=_cluster(2), profile=None, quality=None, seed=0, out_dir=out_dir)
    b = BACKENDS.create(
        "gpu",
        context=ctx,
        model_path={"tiny": tiny_dir, "tiny-sdxl": tiny_xl_dir},
        devices="cpu",
        dtype="fp32",
        clip_model_path=clip_dir,
        check_psnr=True,
        task_timeout_s=120.0,
    )
    yield b
    b.close()


_ids = iter(range(1000))


def _job(
    b: GpuBackend,
    servers: tuple[int, ...],
    cold: bool,
    steps: int = 3,
    seed: int | None = None,
    model: str = "tiny",
    res: int = RES,
) -> Job:
    tid = next(_ids)
    task = Task(tid, b.now(), f"a cat number {tid}", res, len(servers), math.inf, tid if seed is None else seed, model)
    return Job(task, servers, steps, cold, b.now(), 1.0)


def _run(b: GpuBackend, *jobs: Job) -> list[JobResult]:
    """Launch ``jobs`` together and collect every result (also of jobs already running)."""
    for j in jobs:
        b.launch(j)
    out: list[JobResult] = []
    expected = b.running()
    while len(out) < expected:
        out += b.advance(math.inf)
    assert b.running() == 0
    return sorted(out, key=lambda r: r.job.task.id)


# ----------------------------------------------------------------- pure helpers
def test_row_bounds_and_partition() -> None:
    assert row_bounds(32, 2, 2) == [(0, 16), (16, 32)]
    assert row_bounds(10, 3, 2) == [(0, 4), (4, 8), (8, 10)]
    p = [partition(r, 4, 2, 32, split_cfg=True, halo=3, align=2) for r in range(4)]
    assert [q.half for q in p] == [0, 0, 1, 1]
    assert (p[1].row_start, p[1].row_stop, p[1].ctx_start, p[1].ctx_stop) == (16, 32, 12, 32)
    assert partition(1, 2, 1, 32, split_cfg=True, halo=0, align=2).half is None  # no CFG batch


def test_psnr() -> None:
    a = torch.zeros(8, 8, 3, dtype=torch.uint8).numpy()
    b = a.copy()
    assert psnr(a, b) == 100.0
    b[0, 0, 0] = 255
    assert 20 < psnr(a, b) < 40


def test_random_init_architectures_have_real_sizes() -> None:
    from diffusers import UNet2DConditionModel

    for arch, params in (("sd15", 859.5e6), ("sdxl", 2567.5e6)):
        with torch.device("meta"):
            unet = UNet2DConditionModel(**unet_config(arch))
        assert sum(p.numel() for p in unet.parameters()) == pytest.approx(params, rel=1e-3)


def test_import_is_cheap() -> None:
    code = (
        "import sys, eatbench.backends.gpu; assert 'diffusers' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ----------------------------------------------------------------- validation
def test_yaml_params_are_the_constructor_parameters() -> None:
    import inspect

    import yaml

    from eatbench.experiment.compose import conf_dir

    conf = yaml.safe_load((conf_dir() / "backend" / "gpu.yaml").read_text())
    assert conf.pop("name") == "gpu"
    accepted = set(inspect.signature(GpuBackend.__init__).parameters) - {"self", "context"}
    assert set(conf) == accepted  # the typed backend.* settings, all listed in the YAML


def test_missing_model_path_fails_before_workers_start(tmp_path) -> None:
    before = set(multiprocessing.active_children())
    ctx = BackendContext(cluster=_cluster(2), profile=None, quality=None)
    with pytest.raises(
        BackendParamError, match=r"backend.model_path=.* is invalid .*does not exist locally.*; allowed: "
    ):
        GpuBackend(ctx, model_path=str(tmp_path / "no_such_model"), devices="cpu")
    with pytest.raises(BackendParamError, match="model_index.json"):
        GpuBackend(ctx, model_path=str(tmp_path), devices="cpu")
    with pytest.raises(BackendParamError, match="local Hugging Face cache"):
        GpuBackend(ctx, model_path="nobody/not-a-cached-model", devices="cpu")
    with pytest.raises(BackendParamError, match=r"backend.random_init='sd3' is invalid; allowed: sd15"):
        GpuBackend(ctx, random_init="sd3", devices="cpu")
    with pytest.raises(BackendParamError, match=r"backend.model_path=None is invalid; allowed: .*required"):
        GpuBackend(ctx, devices="cpu")
    with pytest.raises(ValueError, match="takes no parameter"):
        BACKENDS.create("gpu", context=ctx, random_init="tiny", bogus=1)
    assert set(multiprocessing.active_children()) == before


# ----------------------------------------------------------------- execution
def test_k1_cold_start_then_warm_reuse(backend: GpuBackend) -> None:
    from PIL import Image

    backend.dissolve((0, 1))
    cold, warm = _run(backend, _job(backend, (0,), cold=True)), _run(backend, _job(backend, (0,), cold=False))
    (c,), (w,) = cold, warm
    assert c.error is None and w.error is None
    assert c.extra["reloaded"] and c.cold_start_time > 0
    assert c.cold_start_time == pytest.approx(c.extra["pg_init_s"] + c.extra["load_s"] + c.extra["warmup_s"])
    assert not w.extra["reloaded"] and w.cold_start_time == 0.0
    assert w.extra["wall_s"] < c.extra["wall_s"] - 0.5 * c.cold_start_time
    assert c.job.start <= c.finish <= w.job.start <= w.finish <= backend.now()
    assert len(w.extra["step_s"]) == 3 and all(s > 0 for s in w.extra["step_s"])
    assert 0.0 <= w.quality <= 100.0  # CLIP score of the tiny local CLIP model
    img = Image.open(w.extra["image_path"])
    assert img.size == (RES, RES)
    assert img.text["prompt"] == w.job.task.prompt and int(img.text["seed"]) == w.job.task.seed
    assert os.path.isfile(w.extra["image_path"].replace(".png", ".json"))


def test_k2_gang_cfg_split_matches_single_device(backend: GpuBackend) -> None:
    backend.dissolve((0, 1))
    (single,) = _run(backend, _job(backend, (0,), cold=True, seed=7))
    (gang,) = _run(backend, _job(backend, (0, 1), cold=True, seed=7))
    (gang_warm,) = _run(backend, _job(backend, (0, 1), cold=False, seed=8))
    assert gang.error is None and gang.extra["reloaded"] and gang.extra["pg_init_s"] > 0
    assert gang.extra["ranks"] == [0, 1]
    assert gang.extra["psnr_vs_single_db"] > 40  # CFG halves on two ranks are exact
    from PIL import Image

    assert psnr(Image.open(single.extra["image_path"]), Image.open(gang.extra["image_path"])) > 40
    assert gang_warm.error is None and not gang_warm.extra["reloaded"] and gang_warm.cold_start_time == 0.0


def test_k2_row_patches_without_cfg_differ_but_resemble(backend: GpuBackend) -> None:
    backend.guidance_scale = 1.0  # no CFG: the two ranks split latent rows (halo 8 of 32)
    try:
        (r,) = _run(backend, _job(backend, (0, 1), cold=False))
    finally:
        backend.guidance_scale = 7.5
    assert r.error is None
    print("row-patch PSNR vs single device:", r.extra["psnr_vs_single_db"])
    assert 10 < r.extra["psnr_vs_single_db"] < 100  # approximate, not identical


def test_sdxl_pipeline_gang_and_model_switch(backend: GpuBackend) -> None:
    """The SDXL pipeline structure (added_cond_kwargs split with the CFG halves); a task
    for another model on a warm group reloads; an unknown model fails the task."""
    (xl,) = _run(backend, _job(backend, (0, 1), cold=True, model="tiny-sdxl"))
    assert xl.error is None and xl.extra["psnr_vs_single_db"] > 40
    (sd,) = _run(backend, _job(backend, (0, 1), cold=False, model="tiny"))  # engine error: still reloads
    assert sd.error is None and sd.extra["reloaded"]
    (bad,) = _run(backend, _job(backend, (0,), cold=True, model="sd3"))
    assert bad.error is not None and "no model" in bad.error


def test_mixed_sequence(backend: GpuBackend) -> None:
    backend.dissolve((0, 1))
    a, b = _run(backend, _job(backend, (0,), cold=True, steps=2), _job(backend, (1,), cold=True, steps=4))
    assert a.error is None and b.error is None and a.extra["reloaded"] and b.extra["reloaded"]
    backend.dissolve((0, 1))  # what the engine does before a gang breaks warm groups
    (g,) = _run(backend, _job(backend, (1, 0), cold=True))
    assert g.extra["ranks"] == [1, 0] and g.error is None
    # warm on the same member set, named in another order: reuses the group
    (g2,) = _run(backend, _job(backend, (0, 1), cold=False))
    assert not g2.extra["reloaded"] and g2.extra["ranks"] == [1, 0]
    # the engine says warm but the worker's group is gone: the backend loads anyway
    backend.dissolve((0,))
    (c,) = _run(backend, _job(backend, (0,), cold=False))
    assert c.error is None and c.extra["reloaded"] and c.cold_start_time > 0
    # advance returns [] at the deadline while a job runs
    backend.launch(_job(backend, (1,), cold=False, steps=30))
    t = backend.now()
    assert backend.advance(t + 0.05) == [] and backend.now() >= t + 0.05
    assert backend.running() == 1
    (last,) = _run(backend)
    assert last.error is None


def test_backend_residency_is_the_cluster_residency_model(backend: GpuBackend) -> None:
    """Warm groups are ``cluster.Residency``'s, keyed by the weights: a gang's cold start
    claims its servers, a cold launch that breaks a gang tears the other member down (its
    next task reloads although the engine may still call it warm)."""
    from eatbench.engine.cluster import Residency

    assert isinstance(backend.residency, Residency)
    backend.dissolve((0, 1))
    assert backend.residency.warm_groups() == []
    (g,) = _run(backend, _job(backend, (1, 0), cold=True))
    key = backend.models["tiny"]["key"]
    assert g.error is None
    assert backend.residency.warm_groups() == [(frozenset({0, 1}), key)]
    assert backend.residency.is_warm((0, 1), key) and not backend.residency.is_warm((0, 1), "other")
    (solo,) = _run(backend, _job(backend, (0,), cold=True))  # breaks {0, 1}: server 1 is torn down
    assert solo.error is None and backend.residency.warm_groups() == [(frozenset({0}), key)]
    (one,) = _run(backend, _job(backend, (1,), cold=False))
    assert one.error is None and one.extra["reloaded"]
    assert backend.residency.warm_group(1) == (frozenset({1}), key)


def test_worker_messages_are_typed() -> None:
    """The worker answers with dataclasses (no tuples indexed by position): a task the
    worker cannot run warm fails with ``Failed`` after ``Started``, asking for a restart."""
    from eatbench.backends.gpu import worker

    sent: list = []
    conn = SimpleNamespace(send=sent.append)
    spec = worker.RunTask(
        job_id=7,
        task_id=3,
        rank=0,
        world=1,
        init=None,
        model=worker.ModelSpec(key="random:tiny", random_init="tiny"),
        prompt="a cat",
        seed=1,
        resolution=32,
        steps=2,
    )
    cfg = worker.WorkerConfig(server=0, device="cpu")
    assert worker._handle_run(worker._State(), cfg, conn, spec) == "exit"
    started, failed = sent
    assert isinstance(started, worker.Started) and (started.job_id, started.rank) == (7, 0)
    assert isinstance(failed, worker.Failed) and (failed.job_id, failed.rank, failed.restart) == (7, 0, True)
    assert "not warm" in failed.reason
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.steps = 3  # type: ignore[misc]


def test_killed_worker_fails_task_and_run_goes_on(backend: GpuBackend) -> None:
    backend.dissolve((0, 1))
    (warmup,) = _run(backend, _job(backend, (0, 1), cold=True))
    assert warmup.error is None
    victim = backend.worker_pid(1)
    backend.launch(_job(backend, (0, 1), cold=False, steps=900))
    assert backend.advance(backend.now() + 1.0) == []
    os.kill(victim, signal.SIGKILL)
    (r,) = _run(backend)
    assert r.error is not None and "server 1" in r.error and "died" in r.error
    assert backend.worker_pid(1) != victim
    (after,) = _run(backend, _job(backend, (0, 1), cold=True))
    assert after.error is None and after.extra["reloaded"]
    assert backend.describe()["worker_restarts"] >= 1


def test_timeout_fails_task_and_restarts(backend: GpuBackend) -> None:
    (warm,) = _run(backend, _job(backend, (0,), cold=True))
    old_pid = backend.worker_pid(0)
    backend.task_timeout_s, backend.cold_timeout_s = 0.5, 0.0
    try:
        t0 = time.monotonic()
        (r,) = _run(backend, _job(backend, (0,), cold=False, steps=900))
    finally:
        backend.task_timeout_s, backend.cold_timeout_s = 120.0, 900.0
    assert r.error is not None and "timed out" in r.error
    assert time.monotonic() - t0 < 10 and backend.worker_pid(0) != old_pid
    (after,) = _run(backend, _job(backend, (0,), cold=False))  # engine still thinks warm
    assert after.error is None and after.extra["reloaded"]


def test_random_init_reports_no_quality(tmp_path, clip_dir: str) -> None:
    """In-process worker path: random weights -> quality None (never invented)."""
    from eatbench.backends.gpu import worker

    cfg = worker.WorkerConfig(server=0, device="cpu")
    state = worker._State()
    spec = worker.RunTask(
        job_id=0,
        task_id=0,
        rank=0,
        world=1,
        init=worker.GroupInit(port=0, backend="gloo"),
        model=worker.ModelSpec(key="random:tiny", random_init="tiny"),
        prompt="a cat",
        seed=1,
        resolution=32,
        steps=2,
        guidance_scale=7.5,
        image_path=str(tmp_path / "x.png"),
        clip_model_path=clip_dir,
        check_psnr=False,
    )
    try:
        payload = worker.run_task(state, cfg, spec, started=lambda t: None)
    finally:
        worker._teardown(state, cfg)
    assert payload["quality"] is None and payload["loaded"] and payload["weights"] == "random"
    assert payload["image"].shape == (32, 32, 3) and payload["image"].dtype.name == "uint8"  # the parent saves it


def test_weights_are_built_in_the_target_dtype() -> None:
    """Random weights are created in fp16/bf16 (never an fp32 copy that is cast later)."""
    from eatbench.backends.gpu.pipelines import build_random_pipeline, load_pipeline

    created: list = []
    hook = torch.nn.modules.module.register_module_parameter_registration_hook(
        lambda module, name, param: created.append(param.dtype) if param is not None else None
    )
    try:
        pipe = load_pipeline(model_path=None, random_init="tiny", device="cpu", dtype="fp16")
        fp16_created = list(created)
        created.clear()
        build_random_pipeline("tiny", "cpu", seed=0, dtype="bf16")
    finally:
        hook.remove()
    assert fp16_created and set(fp16_created) == {torch.float16}
    assert created and set(created) == {torch.bfloat16}
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        assert {p.dtype for p in module.parameters()} == {torch.float16}
    assert torch.get_default_dtype() == torch.float32  # restored
    # same seed and dtype: the same weights (what lets a random-weight gang skip the broadcast)
    again = load_pipeline(model_path=None, random_init="tiny", device="cpu", dtype="fp16")
    assert all(torch.equal(a, b) for a, b in zip(pipe.unet.parameters(), again.unet.parameters(), strict=True))


def test_sd15_random_pipeline_uses_pndm_like_the_release(monkeypatch) -> None:
    """Random sd15 ships the released SD-1.5's scheduler (PNDM: steps + 1 UNet calls)."""
    import diffusers
    from diffusers import PNDMScheduler

    from eatbench.backends.gpu import pipelines

    real_unet, real_vae = diffusers.UNet2DConditionModel, pipelines._vae
    # the scheduler choice without building 860 M UNet parameters: tiny modules stand in
    monkeypatch.setattr(diffusers, "UNet2DConditionModel", lambda **kw: real_unet(**pipelines.unet_config("tiny")))
    monkeypatch.setattr(pipelines, "_vae", lambda arch: real_vae("tiny"))
    pipe = pipelines.build_random_pipeline("sd15", "cpu")
    assert isinstance(pipe.scheduler, PNDMScheduler) and pipe.scheduler.config.skip_prk_steps


def test_random_weight_gang_skips_the_broadcast_and_is_labelled(backend: GpuBackend) -> None:
    saved = backend.models
    backend.models = {"*": {"model_path": None, "random_init": "tiny", "key": "random:tiny"}}
    try:
        backend.dissolve((0, 1))
        (r,) = _run(backend, _job(backend, (0, 1), cold=True))
    finally:
        backend.models = saved
        backend.dissolve((0, 1))
    assert r.error is None and r.extra["weights"] == "random"
    assert r.extra["cold_start_kind"] == "random-weight"
    assert r.extra["weights_broadcast"] is False  # same seed: the checksums matched
    assert r.extra["psnr_vs_single_db"] > 40  # and the ranks really hold the same weights
    assert r.quality is None  # random weights: no image quality
    assert set(r.extra["memory_gib"]) == {0, 1} and r.extra["memory_gib"][0]["peak_rss_gib"] > 0


def test_error_is_reported_before_the_tear_down(backend: GpuBackend) -> None:
    """A plain OOM on a single-rank task: reported at once (well before the 120 s deadline)
    although the worker's tear-down then takes 6 s; the process is kept (no restart)."""
    (warm,) = _run(backend, _job(backend, (0,), cold=True))
    pid = backend.worker_pid(0)
    backend.inject = {"rank": 0, "step": 1, "kind": "oom", "teardown_delay_s": 6.0}
    try:
        t0 = time.monotonic()
        (r,) = _run(backend, _job(backend, (0,), cold=False, steps=3))
        reported_after = time.monotonic() - t0
    finally:
        backend.inject = None
    assert r.error is not None and "out of memory" in r.error and "rank 0" in r.error
    assert reported_after < 4.0, reported_after  # not after the tear-down, not at the deadline
    assert backend.worker_pid(0) == pid  # a plain OOM does not poison the process
    (after,) = _run(backend, _job(backend, (0,), cold=False))  # the engine may still say warm
    assert after.error is None and after.extra["reloaded"]
    assert backend.worker_pid(0) == pid


def test_sticky_error_restarts_the_worker(backend: GpuBackend) -> None:
    """Any error but a plain OOM may be a sticky CUDA error: that process is replaced."""
    (warm,) = _run(backend, _job(backend, (0,), cold=True))
    pid = backend.worker_pid(0)
    backend.inject = {"rank": 0, "step": 0, "kind": "sticky"}
    try:
        (r,) = _run(backend, _job(backend, (0,), cold=False))
    finally:
        backend.inject = None
    assert r.error is not None and "illegal memory access" in r.error
    assert backend.worker_pid(0) != pid
    assert any(e["event"] == "task_error" and e["restart"] for e in backend.events)
    (after,) = _run(backend, _job(backend, (0,), cold=False))
    assert after.error is None and after.extra["reloaded"]


def test_error_in_a_gang_fails_fast_and_replaces_both_workers(backend: GpuBackend) -> None:
    """Rank 1 fails while rank 0 waits in the all-gather (collective timeout 600 s): the
    task fails within seconds and both processes are replaced."""
    backend.dissolve((0, 1))
    (warm,) = _run(backend, _job(backend, (0, 1), cold=True))
    pids = (backend.worker_pid(0), backend.worker_pid(1))
    backend.inject = {"rank": 1, "step": 1, "kind": "error"}
    try:
        t0 = time.monotonic()
        (r,) = _run(backend, _job(backend, (0, 1), cold=False, steps=5))
        reported_after = time.monotonic() - t0
    finally:
        backend.inject = None
    assert r.error is not None and "server 1 (rank 1)" in r.error and "injected" in r.error
    assert reported_after < 10.0, reported_after
    assert backend.worker_pid(0) != pids[0] and backend.worker_pid(1) != pids[1]


def test_compile_warms_every_shape_before_measured_tasks(tmp_path) -> None:
    """With ``compile``, the cold start compiles every listed resolution; a warm task at a
    shape never seen warms it up first and reports that as its cold start: no compilation
    lands inside a measured pipeline call (``eager`` compile backend: tracing, no codegen)."""
    ctx = BackendContext(cluster=_cluster(1), profile=None, quality=None, seed=0)
    b = GpuBackend(
        ctx,
        random_init="tiny",
        devices="cpu",
        dtype="fp32",
        compile=True,
        compile_backend="eager",
        warmup_resolutions=[RES, 96],
        save_images=False,
        task_timeout_s=120.0,
    )
    try:
        (cold,) = _run(b, _job(b, (0,), cold=True, steps=2))
        (listed,) = _run(b, _job(b, (0,), cold=False, steps=2, res=96))
        (new,) = _run(b, _job(b, (0,), cold=False, steps=2, res=128))
    finally:
        b.close()
    assert cold.error is None and cold.extra["warmup_shapes"] == [[RES, 1], [96, 1]]
    assert cold.extra["compile_s"] > 0 and cold.extra["compile_s"] == cold.extra["warmup_s"]
    assert cold.extra["compiled_in_task"] == 0
    assert listed.error is None and listed.cold_start_time == 0.0 and listed.extra["shape_warmup_s"] == 0.0
    assert listed.extra["compiled_in_task"] == 0
    assert new.error is None and new.extra["shape_warmup_s"] > 0 and new.cold_start_time == new.extra["shape_warmup_s"]
    assert new.extra["compiled_in_task"] == 0 and not new.extra["reloaded"]


def test_profiler_refuses_shared_gpu_gangs() -> None:
    from eatbench.backends.gpu.profiler import check_gangs

    with pytest.raises(ValueError, match=r"k=2 is invalid on shared devices \(cuda:0, cuda:0\).*allow_shared"):
        check_gangs({0: "cuda:0", 1: "cuda:0"}, [1, 2], allow_shared_devices=False)
    check_gangs({0: "cuda:0", 1: "cuda:0"}, [1, 2], allow_shared_devices=True)
    check_gangs({0: "cuda:0", 1: "cuda:1"}, [1, 2], allow_shared_devices=False)
    check_gangs({0: "cpu", 1: "cpu"}, [2], allow_shared_devices=False)  # cpu: allowed, marked
    with pytest.raises(ValueError, match="k=4 needs 4 servers"):
        check_gangs({0: "cuda:0", 1: "cuda:1"}, [4], allow_shared_devices=True)


def test_measure_profile_writes_profile_csv(backend: GpuBackend, tmp_path) -> None:
    import csv

    from eatbench.backends.gpu.profiler import PROFILE_COLUMNS, measure_profile
    from eatbench.engine.profiles import LatencyProfile

    out = tmp_path / "profile.csv"
    rows = measure_profile(
        out_csv=str(out),
        model="tiny",
        gpu_kind="cpu",
        resolutions=(RES,),
        ks=(1, 2),
        steps=3,
        repeats=2,
        backend=backend,
    )
    with open(out) as f:
        lines = f.read().splitlines()
    comments = [line for line in lines if line.startswith("#")]
    table = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert tuple(table[0])[: len(PROFILE_COLUMNS)] == PROFILE_COLUMNS
    assert [(r["model"], int(r["resolution"]), int(r["k"])) for r in table] == [("tiny", RES, 1), ("tiny", RES, 2)]
    for r in table:
        assert float(r["step_s"]) > 0 and float(r["fixed_s"]) >= 0 and float(r["cold_start_s"]) > 0
        assert r["weights"] == "pretrained" and int(r["unet_calls"]) == 3
    # both cpu workers share the machine: the k=2 row is marked, in its column and a comment
    assert [int(r["shared_devices"]) for r in table] == [0, 1]
    assert any("k=[2] measured with workers sharing a device" in c for c in comments)
    assert rows[0]["n_steps"] == 6 and os.path.isfile(str(out) + ".json")
    assert len(LatencyProfile.from_csv(out).rows) == 2  # the loader ignores the extra columns


def test_describe_and_close_leave_no_workers(backend: GpuBackend) -> None:
    d = backend.describe()
    assert d["backend"] == "gpu" and d["shared_devices"] is True and d["server_devices"] == {0: "cpu", 1: "cpu"}
    assert d["dtype"] == "fp32" and d["torch"]
    procs = [w.proc for w in backend._workers.values()]
    assert all(p.is_alive() for p in procs)
    backend.close()
    assert not any(p.is_alive() for p in procs)
    assert backend.close() == []  # idempotent


def test_bad_backend_params_fail_before_workers_start() -> None:
    ctx = BackendContext(cluster=_cluster(2), profile=None, quality=None)
    before = set(multiprocessing.active_children())
    with pytest.raises(ValueError, match=r"backend.dtype='fp8' is invalid; allowed: "):
        GpuBackend(ctx, random_init="tiny", devices="cpu", dtype="fp8")
    with pytest.raises(ValueError, match=r"backend.devices=\['tpu:0'\] is invalid.*; allowed: auto, cpu, cuda"):
        GpuBackend(ctx, random_init="tiny", devices=["tpu:0"])
    with pytest.raises(ValueError, match=r"backend.devices='cuda:7' is invalid.*not present"):
        GpuBackend(ctx, random_init="tiny", devices="cuda:7")
    with pytest.raises(ValueError, match=r"backend.cuda_graphs=True is invalid; allowed: false when"):
        GpuBackend(ctx, random_init="tiny", devices="cpu", compile=True, cuda_graphs=True)
    with pytest.raises(ValueError, match=r"backend.collective_timeout_s=0 is invalid; allowed: seconds > 0"):
        GpuBackend(ctx, random_init="tiny", devices="cpu", collective_timeout_s=0)
    with pytest.raises(ValueError, match=r"backend.warmup_resolutions=\[100\] is invalid"):
        GpuBackend(ctx, random_init="tiny", devices="cpu", warmup_resolutions=[100])
    with pytest.raises(ValueError, match=r"backend.bogus=1 is invalid \(unknown parameter\); allowed: model_path"):
        GpuBackend.check_params({"random_init": "tiny", "bogus": 1})
    assert set(multiprocessing.active_children()) == before
