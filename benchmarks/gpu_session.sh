#!/usr/bin/env bash
# The one prepared entry point for a first run of the gpu backend on a GPU node.
#
#   benchmarks/gpu_session.sh OUT_DIR [gpu_check.py options ...]
#
# Steps, each bounded by a timeout and recorded as one JSON line in OUT_DIR/session.jsonl
# as soon as it ends (output of every step is appended to OUT_DIR/session.log):
#   1. install  diffusers and the few packages the node lacks from a local wheelhouse
#               ($WHEELHOUSE, default <repo>/.whl, built by benchmarks/build_wheelhouse.sh)
#               into $SITE_DIR (outside OUT_DIR), put first on PYTHONPATH with the repo;
#   2. monitor  nvidia-smi logs GPU memory and utilisation every $MONITOR_INTERVAL_S s to
#               OUT_DIR/gpu_monitor.csv in the background (when nvidia-smi exists);
#   3. env      benchmarks/gpu_check.py --env-only: GPUs, versions and the imports
#               (diffusers, eatbench.backends.gpu) in seconds; when it fails the session
#               stops here with exit status 2 (nothing else would work);
#   4. check    benchmarks/gpu_check.py (records to OUT_DIR/gpu_check.jsonl as it goes),
#               with small backend deadlines (task 120 s, cold start 180 s, collectives
#               120 s), a per-section limit and an overall budget inside the step's timeout.
# Exit status: 0 when every step and every section passed, 2 when the environment check
# failed, 1 when any other step or section failed or timed out.
#
# Settings (environment): PYTHON (python3), WHEELHOUSE, SITE_DIR, INSTALL_TIMEOUT_S (60),
# ENV_TIMEOUT_S (60), CHECK_TIMEOUT_S (480), CHECK_BUDGET_S (400), MONITOR_INTERVAL_S (2): the
# whole session ends within 10 minutes (one device call).
# OUT_DIR stays small (at most 5 files) so that it can be copied back whole.

set -uo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
    echo "usage: $0 OUT_DIR [gpu_check.py options ...]" >&2
    exit 64
fi
OUT_DIR=$1
shift
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
WHEELHOUSE=${WHEELHOUSE:-$REPO/.whl}
SITE_DIR=${SITE_DIR:-${TMPDIR:-/tmp}/eatbench-site}
INSTALL_TIMEOUT_S=${INSTALL_TIMEOUT_S:-60}
ENV_TIMEOUT_S=${ENV_TIMEOUT_S:-60}
CHECK_TIMEOUT_S=${CHECK_TIMEOUT_S:-480}
CHECK_BUDGET_S=${CHECK_BUDGET_S:-400}
MONITOR_INTERVAL_S=${MONITOR_INTERVAL_S:-2}

mkdir -p "$OUT_DIR" || exit 1
OUT_DIR=$(cd "$OUT_DIR" && pwd)
LOG=$OUT_DIR/session.log
RECORDS=$OUT_DIR/session.jsonl
FAILED=()
START=$(date +%s)

record() { # step rc seconds [note]
    local note=${4:-}
    note=${note//\\/\\\\}
    note=${note//\"/\\\"}
    printf '{"step": "%s", "rc": %s, "seconds": %s, "t": %s, "note": "%s"}\n' \
        "$1" "$2" "$3" "$(($(date +%s) - START))" "$note" >>"$RECORDS"
}

step() { # name timeout_s command ...: run bounded, log, record; returns the command's status
    local name=$1 limit=$2
    shift 2
    local t0 rc
    t0=$(date +%s)
    echo "=== [$name] $(date -u +%FT%TZ) (limit ${limit} s): $*" >>"$LOG"
    timeout --signal=TERM --kill-after=15 "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    local note=""
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        note="timed out after ${limit} s"
    fi
    record "$name" "$rc" "$(($(date +%s) - t0))" "$note"
    echo "=== [$name] rc=$rc $note" >>"$LOG"
    if [[ $rc -ne 0 ]]; then
        FAILED+=("$name")
    fi
    return $rc
}

MONITOR_PID=""
cleanup() {
    if [[ -n "$MONITOR_PID" ]]; then
        kill "$MONITOR_PID" 2>/dev/null
        wait "$MONITOR_PID" 2>/dev/null
    fi
}
trap cleanup EXIT

finish() { # exit_status
    local failed_json=""
    for f in "${FAILED[@]+"${FAILED[@]}"}"; do
        failed_json+="${failed_json:+, }\"$f\""
    done
    printf '{"step": "done", "rc": %s, "failed": [%s], "t": %s}\n' "$1" "$failed_json" \
        "$(($(date +%s) - START))" >>"$RECORDS"
    echo "[gpu_session] exit $1; failed: ${FAILED[*]+"${FAILED[*]}"}; records in $OUT_DIR" >&2
    exit "$1"
}

# 1. install from the wheelhouse (nothing can be downloaded on the node)
shopt -s nullglob
wheels=("$WHEELHOUSE"/*.whl)
shopt -u nullglob
if [[ ${#wheels[@]} -gt 0 ]]; then
    mkdir -p "$SITE_DIR"
    step install "$INSTALL_TIMEOUT_S" "$PY" -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target "$SITE_DIR" "${wheels[@]}"
    export PYTHONPATH="$SITE_DIR:$REPO${PYTHONPATH:+:$PYTHONPATH}"
else
    record install 0 0 "no wheels in $WHEELHOUSE: using what $PY already has"
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

# 2. GPU memory and utilisation in the background
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=timestamp,index,name,memory.used,memory.total,utilization.gpu,power.draw \
        --format=csv -l "$MONITOR_INTERVAL_S" >"$OUT_DIR/gpu_monitor.csv" 2>>"$LOG" &
    MONITOR_PID=$!
    record monitor 0 0 "nvidia-smi every ${MONITOR_INTERVAL_S} s -> gpu_monitor.csv"
else
    record monitor 0 0 "no nvidia-smi: no GPU monitor"
fi

# 3. environment: seconds, fail fast
if ! step env "$ENV_TIMEOUT_S" "$PY" "$REPO/benchmarks/gpu_check.py" --out "$OUT_DIR/env.jsonl" --env-only; then
    tail -n 5 "$OUT_DIR/env.jsonl" >&2 2>/dev/null
    finish 2
fi

# 4. the check itself (its budget ends well inside the step's timeout)
step check "$CHECK_TIMEOUT_S" "$PY" "$REPO/benchmarks/gpu_check.py" --out "$OUT_DIR/gpu_check.jsonl" \
    --budget-s "$CHECK_BUDGET_S" --task-timeout-s 120 --cold-timeout-s 180 --collective-timeout-s 120 "$@"

if [[ ${#FAILED[@]} -gt 0 ]]; then
    finish 1
fi
finish 0
