"""Exact branch and bound for the oracle's fixed-steps objective (total response time).

The problem (the engine's rules): tasks with arrival times, each run on one gang of
servers (its candidate gangs and their warm and cold durations given); a server runs one
task at a time; a launch is warm exactly when every server of its gang last ran one same
task on exactly this gang with the same model (an *intact warm group*); the cluster starts
cold. Minimise the sum over tasks of finish - arrival.

Search. Every schedule can be left-shifted, keeping each server's sequence of tasks (so
every warm flag), until each task starts at the latest of its arrival and its servers'
previous ends (*semi-active*); that only lowers the total. A semi-active schedule is the
sequence of its launches in order of start time, each launch starting at ``e = max(arrival,
latest free time of its gang)``, and ``e`` never below the previous launch's start. So a
depth-first search over "the next launch is (task, gang)" that only allows launches with
``e >=`` the previous start is complete. Interchangeable tasks (a *class*: the same
candidate gangs, durations and model) start in arrival order (exchanging two of them
exchanges their whole assignments), so only each class's next task is branched on.

Pruning. (1) A lower bound per node (``_bound``): the cost so far plus, for each class, its
remaining tasks' shortest runs and a bound on their waits and cold starts. If the class's
remaining tasks use G distinct gangs, at most G of them run at once, so the r-th (in
arrival order) starts no earlier than its arrival, the last start, the previous one's
start, and the earliest end among the G before it or, while fewer than G have started,
the time (r + 1) * k servers are free (``_class_waits``); and each gang's first use is
cold unless it is an intact warm group of the class's model now (a class of the same
model sharing a gang could form more: then no cold start is counted), the first task
being cold when no such group exists. The class's bound is the minimum over G <= servers // k.
(2) State dominance: a node is dropped when a node already generated with the same tasks
launched and the same warm groups (servers of one GPU kind relabelled into a canonical
order) has no later effective free time on any server (``max(free, last start)``) and no
larger cost: any completion of the dropped node, applied to the kept one, starts every
launch no later with the same warm flags, so it costs no more; where it would start a
launch before the previous one (not a branch of the search), left-shifting it gives a
strictly cheaper schedule, which the search reaches along another path.

A deterministic node budget (not wall time) stops the search: the result is then the best
schedule found and the proven bound ``min(incumbent, the smallest bound of a node left
unexplored)``; the same input gives the same output on any machine.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

EPS = 1e-9


@dataclasses.dataclass(frozen=True)
class SearchClass:
    """Interchangeable tasks.

    :param arrivals: arrival times (s) of its tasks, nondecreasing.
    :param tasks: the tasks' ids, in the same order.
    :param model: an id of the model (warm groups keep it).
    :param gangs: candidate gangs (sorted server tuples).
    :param warm: warm duration (s) on each gang.
    :param cold: cold duration (s) on each gang.
    """

    arrivals: tuple[float, ...]
    tasks: tuple[int, ...]
    model: int
    gangs: tuple[tuple[int, ...], ...]
    warm: tuple[float, ...]
    cold: tuple[float, ...]


@dataclasses.dataclass
class SearchResult:
    """``launches``: ``(task id, gang, start s, cold)`` in start order (empty when the
    search found nothing better than the incumbent it was given); ``total``: the best total
    response (s) known (the incumbent's when nothing better); ``bound``: a proven lower
    bound on the optimal total (s); ``nodes``: nodes expanded; ``complete``: the search
    finished within its budget (so ``bound`` is the optimum, up to float rounding)."""

    launches: list[tuple[int, tuple[int, ...], float, bool]]
    total: float
    bound: float
    nodes: int
    complete: bool


class BranchAndBound:
    """Depth-first branch and bound with state dominance (see the module docstring).

    :param classes: the task classes.
    :param kinds: GPU kind of each server (servers of one kind are interchangeable).
    :param node_budget: most nodes to expand.
    :param memo_limit: most stored states per (launched tasks, warm groups) key.
    """

    def __init__(
        self, classes: Sequence[SearchClass], kinds: Sequence[str], node_budget: int, memo_limit: int = 64
    ) -> None:
        self.classes = list(classes)
        self.n_srv = len(kinds)
        self.kinds = list(kinds)
        self.node_budget = int(node_budget)
        self.memo_limit = int(memo_limit)
        n_srv = self.n_srv
        # per class: gang masks, shortest warm/cold run, concurrency bound m, k
        self._masks = [tuple(sum(1 << s for s in g) for g in c.gangs) for c in self.classes]
        self._dw = [min(c.warm) for c in self.classes]
        self._dc = [min(c.cold) for c in self.classes]
        self._pen = [min(cd - wd for cd, wd in zip(c.cold, c.warm, strict=True)) for c in self.classes]
        self._k = [min(len(g) for g in c.gangs) for c in self.classes]
        self._m = [max(1, n_srv // k) for k in self._k]
        self._gang_set = [set(ms) for ms in self._masks]
        # classes that could form a warm group another class uses (same model, a common gang)
        self._feeders = [
            [
                o
                for o in range(len(self.classes))
                if o != c and self.classes[o].model == self.classes[c].model and self._gang_set[o] & self._gang_set[c]
            ]
            for c in range(len(self.classes))
        ]
        # servers of one kind are interchangeable: canonical relabelling within a kind
        self._same_kind = len(set(kinds)) == 1
        self._kind_servers: dict[str, list[int]] = {}
        for s, kd in enumerate(kinds):
            self._kind_servers.setdefault(kd, []).append(s)
        self._kind_index = sorted(self._kind_servers)
        self._memo: dict[tuple, list[tuple[tuple[float, ...], float]]] = {}

    # -- bound ----------------------------------------------------------------------
    def _bound(self, idx: tuple[int, ...], free: tuple[float, ...], grp: tuple[int, ...], t: float) -> float:
        """A lower bound (s) on the total response of the tasks not yet launched."""
        eff = sorted(max(f, t) for f in free)
        total = 0.0
        for c, cls in enumerate(self.classes):
            i0 = idx[c]
            arr = cls.arrivals
            n = len(arr) - i0
            if n <= 0:
                continue
            k, m, dw = self._k[c], self._m[c], self._dw[c]
            # intact warm groups this class can use now (groups are disjoint: count each once)
            usable = 0
            for s in range(self.n_srv):
                gid = grp[s]
                mask = gid >> 8
                if gid >= 0 and mask & -mask == 1 << s and mask in self._gang_set[c] and (gid & 0xFF) == cls.model:
                    usable += 1
            # another class of the same model sharing a gang could form groups for it
            fed = any(idx[o] < len(self.classes[o].arrivals) for o in self._feeders[c])
            forced = usable == 0 and not fed  # the first task is cold
            head = self._dc[c] if forced else dw
            floor = 0.0  # no task waits beyond its arrival and the last start
            for r in range(n):
                a = arr[i0 + r]
                if t > a:
                    floor += t - a
            # the class's remaining tasks use some number G of distinct gangs: at most G of
            # them run at once, and each gang's first use is cold unless it is an intact
            # group now (G - 1 more cold starts when the first is forced cold)
            best = math.inf
            for big_g in range(1, m + 1):
                extra = 0 if fed else (big_g - 1 if forced else max(0, big_g - usable))
                waits = self._class_waits(arr, i0, n, t, eff, k, big_g, head, dw)
                best = min(best, waits + extra * self._pen[c])
                if waits <= floor + EPS:
                    break  # more gangs only add cold starts
            total += best + n * dw + (head - dw)
        return total

    def _class_waits(
        self,
        arr: tuple[float, ...],
        i0: int,
        n: int,
        t: float,
        eff: list[float],
        k: int,
        m: int,
        head: float,
        dw: float,
    ) -> float:
        """A lower bound (s) on the summed waits (start - arrival) of a class's ``n``
        remaining tasks (from index ``i0``, starting in arrival order, no earlier than
        ``t``) when at most ``m`` of them run at once: the r-th starts when one of the m
        before it has ended, or, while fewer than m have started, when (r + 1) * k servers
        are free (``eff``: the servers' free times, sorted); the first lasts ``head``, the
        others at least ``dw``."""
        starts: list[float] = []
        total = 0.0
        n_srv = len(eff)
        prev = t
        for r in range(n):
            a = arr[i0 + r]
            s = a if a > prev else prev  # in arrival order: no earlier than the previous start
            if r > 0:
                # the earliest end among the m starts before (nondecreasing; only the first
                # lasts head, the others dw)
                lo = r - m if r > m else 0
                ended = starts[lo] + (head if lo == 0 else dw)
                if lo == 0 and r >= 2 and starts[1] + dw < ended:
                    ended = starts[1] + dw
                if r < m and (r + 1) * k <= n_srv and eff[(r + 1) * k - 1] < ended:
                    ended = eff[(r + 1) * k - 1]
                if ended > s:
                    s = ended
            elif k <= n_srv and eff[k - 1] > s:
                s = eff[k - 1]
            starts.append(s)
            prev = s
            total += s - a
        return total

    # -- canonical form ---------------------------------------------------------------
    def _canon(self, free: tuple[float, ...], grp: tuple[int, ...], t: float) -> tuple[tuple, tuple[float, ...]]:
        """(warm-group structure, effective free times) with servers of one kind
        relabelled in a canonical order."""
        n_srv = self.n_srv
        eff = [max(f, t) for f in free]
        units = []
        seen = 0
        for s in range(n_srv):
            if seen >> s & 1:
                continue
            gid = grp[s]
            if gid >= 0:
                mask = gid >> 8
                members = [q for q in range(n_srv) if mask >> q & 1]
                seen |= mask
            else:
                members = [s]
                seen |= 1 << s
            kinds = tuple(self._kind_index.index(self.kinds[q]) for q in members) if not self._same_kind else ()
            units.append(((len(members) if gid >= 0 else 0, gid & 0xFF if gid >= 0 else -1, kinds, eff[s]), members))
        units.sort(key=lambda u: u[0])
        # new label of each server: within its kind, in unit order
        pos = {kd: 0 for kd in self._kind_servers}
        relabel = [0] * n_srv
        for _, members in units:
            for q in members:
                kd = self.kinds[q]
                relabel[q] = self._kind_servers[kd][pos[kd]]
                pos[kd] += 1
        new_grp = [-1] * n_srv
        new_eff = [0.0] * n_srv
        for s in range(n_srv):
            ns = relabel[s]
            new_eff[ns] = eff[s]
            gid = grp[s]
            if gid >= 0:
                mask = gid >> 8
                nm = 0
                for q in range(n_srv):
                    if mask >> q & 1:
                        nm |= 1 << relabel[q]
                new_grp[ns] = (nm << 8) | (gid & 0xFF)
        return tuple(new_grp), tuple(new_eff)

    def _dominated(self, idx: tuple[int, ...], free, grp, t: float, cost: float) -> bool:
        """True when a stored state dominates this one; otherwise store it (``memo_limit``
        0: no dominance at all)."""
        if self.memo_limit == 0:
            return False
        cg, ce = self._canon(free, grp, t)
        key = (idx, cg)
        entries = self._memo.get(key)
        if entries is None:
            self._memo[key] = [(ce, cost)]
            return False
        for oe, oc in entries:
            if oc <= cost + EPS and all(a <= b + EPS for a, b in zip(oe, ce, strict=True)):
                return True
        # drop the stored states this one dominates; keep at most memo_limit
        entries[:] = [
            (oe, oc)
            for oe, oc in entries
            if not (cost <= oc + EPS and all(b <= a + EPS for a, b in zip(oe, ce, strict=True)))
        ]
        if len(entries) < self.memo_limit:
            entries.append((ce, cost))
        return False

    # -- search ---------------------------------------------------------------------
    def solve(self, upper: float = math.inf) -> SearchResult:
        """Search from the empty cluster; ``upper``: the total of a known schedule (s)."""
        n_cls = len(self.classes)
        idx0 = (0,) * n_cls
        free0 = (0.0,) * self.n_srv
        grp0 = (-1,) * self.n_srv
        t0 = -math.inf
        self._best = upper
        self._best_path: list | None = None
        self._nodes = 0
        self._pending = math.inf  # smallest bound of a node left unexplored (budget)
        self._memo.clear()
        root_lb = self._bound(idx0, free0, grp0, 0.0)
        path: list = []
        self._dfs(idx0, free0, grp0, t0, 0.0, root_lb, path)
        complete = self._pending == math.inf
        bound = min(self._best, self._pending)
        bound = max(bound, min(root_lb, self._best))
        launches = list(self._best_path) if self._best_path is not None else []
        return SearchResult(launches, self._best, bound, self._nodes, complete)

    def _children(self, idx, free, grp, t, cost):
        out = []
        n_srv = self.n_srv
        for c, cls in enumerate(self.classes):
            i = idx[c]
            if i >= len(cls.arrivals):
                continue
            a = cls.arrivals[i]
            model = cls.model
            nidx = idx[:c] + (i + 1,) + idx[c + 1 :]
            for gi, g in enumerate(cls.gangs):
                e = a
                for s in g:
                    if free[s] > e:
                        e = free[s]
                if e < t - EPS:
                    continue  # it would have started before the previous launch
                mask = self._masks[c][gi]
                gid = (mask << 8) | model
                warm = all(grp[s] == gid for s in g)
                d = cls.warm[gi] if warm else cls.cold[gi]
                end = e + d
                nfree = list(free)
                ngrp = list(grp)
                for s in g:
                    old = grp[s]
                    if old >= 0 and old != gid:
                        om = old >> 8
                        for q in range(n_srv):
                            if om >> q & 1:
                                ngrp[q] = -1
                for s in g:
                    nfree[s] = end
                    ngrp[s] = gid
                ncost = cost + end - a
                nfree_t, ngrp_t = tuple(nfree), tuple(ngrp)
                lb = ncost + self._bound(nidx, nfree_t, ngrp_t, e)
                out.append((lb, c, gi, nidx, nfree_t, ngrp_t, e, ncost, (cls.tasks[i], g, e, not warm)))
        out.sort(key=lambda x: (x[0], x[1], x[2]))
        return out

    def _dfs(self, idx, free, grp, t, cost, lb, path) -> None:
        if lb >= self._best - EPS:
            return
        if self._nodes >= self.node_budget:
            self._pending = min(self._pending, lb)
            return
        self._nodes += 1
        if all(i >= len(c.arrivals) for i, c in zip(idx, self.classes, strict=True)):  # every task launched
            if cost < self._best - EPS:
                self._best = cost
                self._best_path = list(path)
            return
        children = self._children(idx, free, grp, t, cost)
        for clb, _c, _gi, nidx, nfree, ngrp, e, ncost, launch in children:
            if clb >= self._best - EPS:
                break
            if self._nodes >= self.node_budget:
                self._pending = min(self._pending, clb)
                continue
            if self._dominated(nidx, nfree, ngrp, e, ncost):
                continue
            path.append(launch)
            self._dfs(nidx, nfree, ngrp, e, ncost, clb, path)
            path.pop()
