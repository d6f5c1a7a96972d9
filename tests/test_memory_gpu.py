"""The gpu backend's GPU memory budget (``cluster.gpu_kinds.<kind>.memory_gib``), without a GPU:
the per-process fraction each worker gets, the refusal of a budget above the device, the cpu
path left uncapped, and the profiler's ``memory_gib`` figure. The CUDA cap itself
(``torch.cuda.set_per_process_memory_fraction`` raising out-of-memory beyond it) needs a GPU
and is not exercised here."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from eatbench.backends.gpu import backend as gpu_backend  # noqa: E402
from eatbench.backends.gpu.backend import BackendParamError, GpuBackend, memory_caps, memory_note  # noqa: E402
from eatbench.backends.gpu.profiler import launch_memory_gib  # noqa: E402
from eatbench.backends.gpu.worker import WorkerConfig, apply_memory_cap  # noqa: E402
from eatbench.engine.backend import BackendContext  # noqa: E402
from eatbench.engine.cluster import Cluster, GpuKind, Server  # noqa: E402


def test_each_server_gets_its_budget_as_a_share_of_its_device():
    kinds = {0: "edge", 1: "edge", 2: "big", 3: "edge"}
    devices = {0: "cuda:0", 1: "cuda:0", 2: "cuda:1", 3: "cpu"}
    totals = {"cuda:0": 79.2, "cuda:1": 79.2, "cpu": None}
    caps = memory_caps(kinds, {"edge": 16.0, "big": 80.0}, devices, totals)
    # two 16 GiB servers time-slicing one device: each capped on its own at 16 GiB
    assert caps[0] == caps[1] == pytest.approx(16.0 / 79.2)
    # a card's nominal 80 GiB on a device showing 79.2 GiB: the whole device, no cap
    assert caps[2] is None
    assert caps[3] is None  # cpu: never capped
    # no budget (a measuring cluster: Cluster.uniform declares inf) or an unknown kind: no cap
    assert memory_caps({0: "u"}, {"u": math.inf}, {0: "cuda:0"}, totals) == {0: None}
    assert memory_caps({0: "x"}, {}, {0: "cuda:0"}, totals) == {0: None}


def test_a_budget_above_the_device_is_refused():
    with pytest.raises(
        BackendParamError,
        match=r"cluster.gpu_kinds.big.memory_gib=100 is invalid; allowed: at most the device's 79.2 GiB \(cuda:0",
    ):
        memory_caps({0: "big"}, {"big": 100.0}, {0: "cuda:0"}, {"cuda:0": 79.2})


def test_oversubscribed_devices_are_noted():
    devices = {0: "cuda:0", 1: "cuda:0", 2: "cuda:1"}
    assert memory_note({0: 0.4, 1: 0.4, 2: 0.9}, devices) is None
    note = memory_note({0: 0.7, 1: 0.7, 2: None}, devices)
    assert note is not None and "cuda:0: 140% of its memory" in note and "cuda:1" not in note


def test_the_worker_sets_the_cap_only_on_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d: calls.append((f, d)))
    assert not apply_memory_cap(WorkerConfig(server=0, device="cpu", memory_fraction=0.5))
    assert not apply_memory_cap(WorkerConfig(server=0, device="cuda:0"))
    assert calls == []
    assert apply_memory_cap(WorkerConfig(server=0, device="cuda:1", memory_fraction=0.25))
    assert calls == [(0.25, "cuda:1")]


def _cluster(memory: dict[str, float], servers: list[str]) -> Cluster:
    kinds = {k: GpuKind(k, memory_gib=m) for k, m in memory.items()}
    return Cluster([Server(i, k) for i, k in enumerate(servers)], kinds)


def _fake_start(monkeypatch, devices: list[str], total_gib: float) -> list[int]:
    """Pretend ``devices`` exist with ``total_gib`` each; record spawned servers, start none."""
    spawned: list[int] = []
    monkeypatch.setattr(gpu_backend, "resolve_devices", lambda d: list(devices))
    monkeypatch.setattr(gpu_backend, "device_memory_gib", lambda d: total_gib if d.startswith("cuda") else None)

    def spawn(self, cfg):
        spawned.append(cfg.server)
        return gpu_backend._Worker(cfg=cfg, proc=None, conn=None, info={"pid": 0})

    monkeypatch.setattr(GpuBackend, "_spawn", spawn)
    monkeypatch.setattr(GpuBackend, "_wait_ready", lambda self, timeout_s: None)
    return spawned


def _backend(cluster: Cluster) -> GpuBackend:
    b = GpuBackend(BackendContext(cluster, None, None), random_init="tiny", dtype="fp32")
    return b


def test_the_backend_refuses_a_budget_above_the_device_before_any_worker_starts(monkeypatch):
    spawned = _fake_start(monkeypatch, ["cuda:0"], 16.0)
    with pytest.raises(BackendParamError, match=r"memory_gib=24 is invalid; allowed: at most the device's 16.0 GiB"):
        _backend(_cluster({"paper_gpu": 24.0}, ["paper_gpu"] * 2))
    assert spawned == []


def test_the_backend_caps_each_worker_and_describes_it(monkeypatch):
    spawned = _fake_start(monkeypatch, ["cuda:0"], 80.0)
    b = _backend(_cluster({"edge": 16.0, "mid": 24.0}, ["edge", "mid", "edge"]))
    try:
        assert spawned == [0, 1, 2]
        assert [b._configs[s].memory_fraction for s in range(3)] == pytest.approx([0.2, 0.3, 0.2])
        d = b.describe()
        assert d["memory_budget"][1] == {"budget_gib": 24.0, "device_gib": 80.0, "fraction": pytest.approx(0.3)}
        assert d["memory_note"] is None  # 16 + 24 + 16 GiB fit the 80 GiB device
    finally:
        b._workers.clear()  # nothing to stop: no process was started


def test_the_cpu_path_stays_uncapped(monkeypatch):
    _fake_start(monkeypatch, ["cpu"], 80.0)
    b = _backend(_cluster({"edge": 16.0}, ["edge", "edge"]))
    try:
        assert [c.memory_fraction for c in b._configs.values()] == [None, None]
        d = b.describe()
        assert d["memory_budget"][0] == {"budget_gib": 16.0, "device_gib": None, "fraction": None}
        assert "not applied" in d["memory_note"]
    finally:
        b._workers.clear()


def test_a_measuring_cluster_is_not_capped(monkeypatch):
    _fake_start(monkeypatch, ["cuda:0"], 80.0)
    b = _backend(Cluster.uniform(2, "h100"))
    try:
        assert [c.memory_fraction for c in b._configs.values()] == [None, None]
        assert b.describe()["memory_budget"][0]["budget_gib"] is None
    finally:
        b._workers.clear()


def test_the_profiler_records_the_gangs_peak_reserved_memory():
    def result(*peaks):
        return SimpleNamespace(extra={"memory_gib": {s: {"peak_reserved_gib": p} for s, p in enumerate(peaks)}})

    assert launch_memory_gib([result(3.5, 4.25), result(4.0, 4.1)]) == 4.25
    cpu = SimpleNamespace(extra={"memory_gib": {0: {"peak_rss_gib": 2.0}}})
    assert launch_memory_gib([cpu]) is None  # cpu: not a GPU figure, left unknown
