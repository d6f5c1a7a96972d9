"""The fidelity loop on CPU with the tiny random pipeline: profile, real run, sim run, report.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/fidelity.py                     # writes reports/fidelity.md
    python benchmarks/fidelity.py --tasks 20 --rate 0.8 --seeds 0 1     # more tasks / seeds

Steps (each is what the ``eatbench profile`` / ``eatbench fidelity`` commands do):

1. save the tiny random SD-style pipeline (``save_tiny_pipeline``) to ``<work>/tiny_sd``;
2. measure a latency profile on cpu through the gpu backend's worker processes
   (``gpu_kind`` ``cpu``, model ``tiny``, 64 px, k in {1, 2}) -> ``<work>/profile_cpu_tiny.csv``;
3. run a small Poisson workload on 2 servers with ``backend=gpu`` (devices cpu: the tasks
   really run) and the same experiment with ``backend=sim`` and the measured profile;
4. write ``fidelity.json`` to ``<work>`` and the markdown report (default
   ``reports/fidelity.md``) with the MAPE figures, the per-task table, the thread count
   and the machine.

This is a CPU / tiny-model run: it shows that the loop works end to end and what its
errors look like on a noisy shared CPU; it is not the GPU fidelity figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent


def experiment_overrides(
    model_path: str, *, tasks: int, rate: float, steps: int, scheduler: str, seed: int
) -> list[str]:
    """Hydra overrides of the CPU fidelity experiment: 2 cpu servers, tiny model, 64 px."""
    return [
        f"seed={seed}",
        "cluster.name=cpu2",
        "++cluster.gpu_kinds={cpu:{speed:1.0}}",
        "cluster.servers=[cpu,cpu]",
        "workload=poisson",
        "workload.name=tiny_cpu",
        f"workload.rate={rate}",
        f"workload.n_tasks={tasks}",
        "workload.model=tiny",
        "workload.resolutions=[64]",
        "workload.k_choices=[1,2]",
        f"scheduler={scheduler}",
        f"scheduler.params.steps={steps}",
        "backend=gpu",
        f"backend.model_path={model_path}",
        "backend.devices=cpu",
        "backend.dtype=fp32",
        "backend.save_images=false",
        "backend.task_timeout_s=120",
        "output.write=false",
    ]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _breakdown(report: object) -> str:
    """Markdown rows: execution time real vs sim by coldness and by whether the task ran
    alone in the real run (tasks with the same decision in both runs only)."""
    out = []
    for cold in (False, True):
        for overlap in (False, True):
            rows = [
                r
                for c in report.per_seed
                for r in c.tasks
                if r["same_decision"] and r["cold_real"] == cold and r["overlap_real"] == overlap
            ]
            if not rows:
                continue
            real = statistics.fmean(r["exec_real"] for r in rows)
            sim = statistics.fmean(r["exec_sim"] for r in rows)
            err = statistics.fmean(r["exec_err_pct"] for r in rows)
            out.append(
                f"| {'cold' if cold else 'warm'} | {'overlapped another task' if overlap else 'alone'} | {len(rows)} "
                f"| {real:.2f} | {sim:.2f} | {100 * (sim - real) / real:+.0f} | {err:.1f} |"
            )
    return "\n".join(out)


def _demote(markdown: str) -> str:
    """Every heading one level down (a report becomes a section)."""
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines()) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=20, help="tasks per run")
    p.add_argument("--rate", type=float, default=0.8, help="Poisson arrival rate, tasks/s")
    p.add_argument("--steps", type=int, default=8, help="denoising steps per task")
    p.add_argument("--schedulers", nargs="+", default=["fifo", "earliest_finish"], help="the first is the headline")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="workload seeds")
    p.add_argument("--repeats", type=int, default=4, help="warm tasks per profile point")
    p.add_argument("--work", default=str(REPO / "results" / "fidelity_cpu"), help="working directory")
    p.add_argument("--out", default=str(REPO / "reports" / "fidelity.md"), help="markdown report")
    p.add_argument("--profile", default=None, help="reuse this profile CSV instead of measuring one")
    a = p.parse_args(argv)

    from eatbench.backends.gpu.pipelines import save_tiny_pipeline
    from eatbench.engine.profiles import LatencyProfile
    from eatbench.experiment.compose import compose_experiment
    from eatbench.experiment.fidelity import render_markdown, run_fidelity, write_fidelity
    from eatbench.gpu_cli import ProfileArgs, run_profile

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    tiny = work / "tiny_sd"
    if not (tiny / "model_index.json").is_file():
        save_tiny_pipeline(tiny)

    def overrides(scheduler: str) -> list[str]:
        return experiment_overrides(
            str(tiny), tasks=a.tasks, rate=a.rate, steps=a.steps, scheduler=scheduler, seed=a.seeds[0]
        )

    t_profile = time.perf_counter()
    if a.profile:
        profile_csv = a.profile
    else:
        profile_csv, _ = run_profile(
            compose_experiment(overrides(a.schedulers[0])),
            ProfileArgs(out=str(work / "profile_cpu_tiny.csv"), steps=a.steps, repeats=a.repeats, ks=[1, 2]),
        )
    t_profile = time.perf_counter() - t_profile

    reports = {}
    t_runs = time.perf_counter()
    for sched in a.schedulers:
        cfg = compose_experiment([*overrides(sched), "profile=csv", f"profile.path={profile_csv}"])
        reports[sched] = run_fidelity(cfg, a.seeds, write_runs=False)
    t_runs = time.perf_counter() - t_runs
    load_end = os.getloadavg()

    head = reports[a.schedulers[0]]
    prof = LatencyProfile.from_csv(profile_csv)
    prof_rows = "\n".join(
        f"| {r.gpu_kind} | {r.model} | {r.resolution} | {r.k} | {r.step_s * 1e3:.1f} | {r.fixed_s * 1e3:.1f} "
        f"| {r.cold_start_s:.2f} |"
        for r in prof.rows
    )
    summary_rows = "\n".join(
        f"| `{s}` | {m['n_compared']} | {m['exec_mape_pct']:.1f} | {m['exec_mape_warm_pct']:.1f} "
        f"| {m['exec_mape_cold_pct']:.1f} | {m['response_mean_mape_pct']:.1f} "
        f"| {m['response_p90_mape_pct']:.1f} | {100 * m['decisions_agree']:.0f} |"
        for s, m in ((s, r.metrics) for s, r in reports.items())
    )
    threads = head.backend.get("cpu_threads_per_worker")
    cmd = "OMP_NUM_THREADS=1 python benchmarks/fidelity.py " + " ".join(
        [f"--tasks {a.tasks}", f"--rate {a.rate:g}", f"--steps {a.steps}", f"--schedulers {' '.join(a.schedulers)}"]
        + [f"--seeds {' '.join(map(str, a.seeds))}", f"--repeats {a.repeats}"]
    )
    preamble = f"""\
**This is a CPU / tiny-model run, not the GPU fidelity figure.** The "gpu" backend ran the
tiny random SD-style pipeline (UNet widths 32/64, 64 px images, fp32, random weights) in
two worker processes on the CPU (`backend.devices=cpu`, k=2 gangs over gloo). It
shows the whole loop (measure a profile, run the same experiment on both backends,
compare) working end to end, and how large the errors are on a small, shared, noisy CPU.

- Machine: {_cpu_model()}, {os.cpu_count()} logical CPU(s) visible, {platform.platform()}; shared
  with other jobs (load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end).
- Threads: {threads} torch thread(s) per worker process, 2 worker processes (one per server),
  OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS")}.
- Workload: {a.tasks} tasks, Poisson at {a.rate:g} tasks/s, k drawn from {{1, 2}}, {a.steps} steps,
  2 servers; seeds {a.seeds}; each (scheduler, seed) is one real run and one simulated run.
- Wall time: profile {t_profile:.0f} s, gpu + sim runs {t_runs:.0f} s, total {time.perf_counter() - t0:.0f} s.
- Reproduce: `{cmd}`.

## Headline

| scheduler | tasks | exec MAPE % | warm % | cold % | mean response MAPE % | p90 response MAPE % | same decisions % |
|---|---:|---:|---:|---:|---:|---:|---:|
{summary_rows}

Target on real GPUs: <= 10 % for per-task execution and for mean and p90 response time.
Both runs get the same tasks at the same arrival times, but decisions can still differ:
which servers are idle depends on the order of completions, and a scheduler that uses the
profile's estimates (`earliest_finish`) chooses by them; "same decisions" says how often
servers, steps and coldness agreed. Response-time errors include such divergence, and
they accumulate along the queue (a task that waits inherits the errors of those before it).

Where the execution-time error of `{a.schedulers[0]}` comes from (tasks with the same
decision in both runs; "overlapped": another task was running at the same time in the real
run, on the other server of this 2-core, shared machine):

| task | in the real run | tasks | mean exec real (s) | mean exec sim (s) | bias % | MAPE % |
|---|---|---:|---:|---:|---:|---:|
{_breakdown(head)}

Measured profile (`{Path(profile_csv).name}`; {a.steps} steps x {a.repeats} warm repeats per point,
medians; cold start = one sample, the gang's first task, measured with nothing else running):

| gpu_kind | model | px | k | step (ms) | fixed (ms) | cold start (s) |
|---|---|---:|---:|---:|---:|---:|
{prof_rows}

What a real GPU run changes: a task there is a real SD model (e.g. SD-1.5 at 512 px, 20-50
steps, 1-3 s), each step bracketed by device synchronisation, one GPU per server, so the
step time is stable (a few % spread) and gang members do not compete for cores as the two
worker processes do here with each other and with other users' jobs; k=2 exchanges over
NCCL instead of gloo; the cold start is dominated by loading ~2-5 GB of weights (seconds,
sensitive to the page cache) rather than the ~2 s of process-group and tiny-model set-up
here; and the backend's fixed per-task overhead (IPC, launch, result return: milliseconds)
is a much smaller share of a multi-second task than of a sub-second tiny one. Those are
the error sources the <= 10 % target applies to: run `eatbench profile` and
`eatbench fidelity` on the GPU machine (see the README) for that figure."""
    json_path, md_path = write_fidelity(
        head, work, markdown_path=a.out, title="Simulator fidelity: CPU / tiny-model run", preamble=preamble
    )
    text = md_path.read_text()
    first_section = text.index("\nExperiment `")
    text = text[:first_section] + f"\n## Scheduler `{a.schedulers[0]}`\n" + _demote(text[first_section:])
    for sched in a.schedulers[1:]:
        write_fidelity(reports[sched], work / sched)
        text += "\n" + _demote(render_markdown(reports[sched], title=f"Scheduler `{sched}`"))
    md_path.write_text(text)
    for s, r in reports.items():
        rm = r.metrics
        print(
            f"{s}: exec MAPE {rm['exec_mape_pct']:.1f} %, mean response MAPE {rm['response_mean_mape_pct']:.1f} %, "
            f"p90 response MAPE {rm['response_p90_mape_pct']:.1f} %, same decisions {100 * rm['decisions_agree']:.0f} %"
        )
    print(f"-> {md_path}\n-> {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
