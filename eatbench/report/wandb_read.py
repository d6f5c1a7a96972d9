"""Read an offline W&B run (``run-<id>.wandb``) back without network.

The file is a LevelDB-log framed stream of protobuf records (wandb's internal format, tested
with wandb 0.31). Our own JSONL (``eatbench.report.wandb_log.read_jsonl``) is the source of
truth; this reader checks that W&B got the same values.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 32768
HEADER = 7  # ':W&B' magic + version bytes


@dataclass
class OfflineRun:
    """History rows, summary, config, ids and metric definitions of an offline run.

    ``metrics`` maps each ``define_metric`` name to its step metric (``""`` when none).
    """

    run_id: str = ""
    group: str = ""
    job_type: str = ""
    metrics: dict[str, str] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def iter_records(path: str | Path) -> Iterator[bytes]:
    """The raw protobuf records of a ``.wandb`` file (LevelDB log framing)."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, buf = HEADER, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:
            pos += BLOCK - pos % BLOCK
            continue
        _crc, n, typ = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        chunk = data[pos : pos + n]
        pos += n
        if typ == 1:
            yield chunk
        elif typ == 2:
            buf = chunk
        elif typ == 3:
            buf += chunk
        elif typ == 4:
            yield buf + chunk
            buf = b""


def read_run(path: str | Path) -> OfflineRun:
    """History, summary, config, ids and metric definitions of the offline run file ``path``."""
    from wandb.proto import wandb_internal_pb2 as pb

    out = OfflineRun()

    def key(item) -> str:
        return item.key or "/".join(item.nested_key)

    for raw in iter_records(path):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            out.history.append({key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            out.summary.update({key(i): json.loads(i.value_json) for i in rec.summary.update})
        elif kind == "run":
            out.run_id, out.group, out.job_type = rec.run.run_id, rec.run.run_group, rec.run.job_type
            out.config.update({key(i): json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "metric":
            out.metrics[rec.metric.name] = rec.metric.step_metric
        elif kind == "config":
            out.config.update({key(i): json.loads(i.value_json) for i in rec.config.update})
    return out


def find_runs(wandb_dir: str | Path) -> list[Path]:
    """Every offline run file under ``wandb_dir`` (``offline-run-*/run-*.wandb``)."""
    return sorted(Path(wandb_dir).glob("**/offline-run-*/run-*.wandb"))
