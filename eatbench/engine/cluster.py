"""Servers, GPU kinds and model residency (which gangs are warm for which model)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from eatbench.core.config import ClusterConfig, GpuKindConfig, server_kinds


@dataclass(frozen=True, slots=True)
class GpuKind:
    """A kind of GPU. ``speed`` is throughput relative to ``relative_to`` (or 1.0);
    ``memory_gib`` is one GPU's memory in GiB (``inf``: unbounded, e.g. a measuring
    cluster built by :meth:`Cluster.uniform`, which the gpu backend does not cap)."""

    name: str
    speed: float = 1.0
    relative_to: str | None = None
    memory_gib: float = 24.0


@dataclass(frozen=True, slots=True)
class Server:
    """An edge server with one GPU. ``index`` is its position in the cluster."""

    index: int
    gpu_kind: str


class Cluster:
    """The servers of an experiment and the GPU kinds they use."""

    def __init__(self, servers: list[Server], gpu_kinds: dict[str, GpuKind], name: str = "cluster"):
        self.name = name
        self.servers = servers
        self.gpu_kinds = gpu_kinds
        self.kind_of = [s.gpu_kind for s in servers]

    @classmethod
    def from_config(cls, cfg: ClusterConfig) -> Cluster:
        kinds = {
            name: GpuKind(name, k.speed, k.relative_to, k.memory_gib)
            for name, k in cfg.gpu_kinds.items()
            if isinstance(k, GpuKindConfig)
        }
        servers = [Server(i, kind) for i, kind in enumerate(server_kinds(cfg))]
        return cls(servers, kinds, cfg.name)

    @classmethod
    def uniform(cls, n: int, gpu_kind: str, name: str = "uniform") -> Cluster:
        """``n`` servers of one GPU kind ``gpu_kind`` (speed 1.0, memory unbounded: the
        gpu backend gives each worker its whole device)."""
        if n < 1:
            raise ValueError(f"n={n} is invalid; allowed: an integer >= 1 (servers)")
        kinds = {gpu_kind: GpuKind(gpu_kind, memory_gib=math.inf)}
        return cls([Server(i, gpu_kind) for i in range(n)], kinds, name)

    def __len__(self) -> int:
        return len(self.servers)


class Residency:
    """Which server groups hold a loaded, ready pipeline (are *warm*) and for what model.

    A group of servers that last ran a task together is warm for that task's model. A
    launch on exactly that group (same member set) for the same model is warm; any other
    launch is cold, and it dissolves every warm group that shares a server with it (those
    servers' pipelines and process groups are torn down) before forming its own group.
    """

    def __init__(self, n_servers: int) -> None:
        self._group_of: list[tuple[frozenset[int], str] | None] = [None] * n_servers

    def is_warm(self, servers: tuple[int, ...], model: str) -> bool:
        """Whether launching ``model`` on ``servers`` needs no cold start."""
        group = self._group_of[servers[0]]
        return (
            group is not None
            and group[1] == model
            and len(group[0]) == len(servers)
            and all(s in group[0] for s in servers)
        )

    def warm_group(self, server: int) -> tuple[frozenset[int], str] | None:
        """The warm group (members, model) that ``server`` belongs to, if any."""
        return self._group_of[server]

    def warm_groups(self) -> list[tuple[frozenset[int], str]]:
        """Every distinct warm group."""
        seen: dict[frozenset[int], str] = {}
        for g in self._group_of:
            if g is not None:
                seen[g[0]] = g[1]
        return list(seen.items())

    def touched(self, servers: tuple[int, ...]) -> set[int]:
        """Servers whose warm groups a cold launch on ``servers`` would dissolve."""
        out: set[int] = set()
        for s in servers:
            g = self._group_of[s]
            if g is not None:
                out.update(g[0])
        return out

    def dissolve(self, servers: Iterable[int]) -> set[int]:
        """Tear down every warm group that holds one of ``servers``; returns the servers of
        those groups (whose pipelines and process groups must go)."""
        touched = self.touched(tuple(servers))
        for s in touched:
            self._group_of[s] = None
        return touched

    def claim(self, servers: tuple[int, ...], model: str) -> set[int]:
        """Record a launch of ``model`` on ``servers``. Returns the servers whose warm
        groups it dissolved (empty for a warm launch; a cold launch on servers that held
        no group dissolves nothing but is still cold: check ``is_warm`` first)."""
        if self.is_warm(servers, model):
            return set()
        touched = self.touched(servers)
        for s in touched:
            self._group_of[s] = None
        group = (frozenset(servers), model)
        for s in servers:
            self._group_of[s] = group
        return touched
