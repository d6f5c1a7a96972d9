#!/usr/bin/env bash
# Build the wheelhouse that benchmarks/gpu_session.sh installs on an air-gapped GPU node
# (Python 3.12, x86-64, torch / transformers / torchmetrics preinstalled, no diffusers).
#
#   benchmarks/build_wheelhouse.sh [DEST]        # default DEST: <repo>/.whl
#
# What goes in: diffusers at the version this project is tested with (the one installed in
# the Python that runs this script, or $DIFFUSERS_VERSION), then every requirement of a
# carried wheel that the node's packages (benchmarks/gpu_node_packages.txt, or
# $NODE_PACKAGES) do not satisfy, at the version installed here when it fits. A requirement
# the node has in an incompatible version (e.g. huggingface-hub for diffusers) stops the
# build with a message: carrying a second copy could break the node's transformers.
# Downloads use `pip download --no-deps --only-binary=:all: --python-version 3.12
# --platform manylinux...`, one version of each package; DEST/manifest.json lists the
# wheels and each decision. Carry DEST to the node (/.whl/ is git-ignored: wheels are never
# committed); the whole wheelhouse must stay small (a few MB).

set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${1:-$REPO/.whl}
PY=${PYTHON:-python3}
NODE_PACKAGES=${NODE_PACKAGES:-$REPO/benchmarks/gpu_node_packages.txt}
mkdir -p "$DEST"

exec "$PY" - "$DEST" "$NODE_PACKAGES" <<'PYEOF'
import importlib.metadata as md
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

dest, node_file = Path(sys.argv[1]), Path(sys.argv[2])
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]
TARGET_ENV = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3",
              "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}

node: dict[str, str | None] = {}
for line in node_file.read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if line:
        name, _, version = line.partition("==")
        node[canonicalize_name(name)] = version or None


def local_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def download(spec: str) -> Path:
    before = set(dest.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", "-d", str(dest), "-q", spec]
    for p in PLATFORMS:
        cmd[4:4] = ["--platform", p]
    subprocess.run(cmd, check=True)
    new = set(dest.glob("*.whl")) - before
    name = canonicalize_name(Requirement(spec).name)
    match = [w for w in dest.glob("*.whl") if canonicalize_name(w.name.split("-")[0]) == name]
    if len(match) != 1:
        sys.exit(f"expected one wheel of {name} in {dest}, found {[w.name for w in match]}: keep one version of each")
    return (new or set(match)).pop()


def requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines() if line.startswith("Requires-Dist:")]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(TARGET_ENV)]


version = os.environ.get("DIFFUSERS_VERSION") or local_version("diffusers")
if not version:
    sys.exit("diffusers is not installed here and DIFFUSERS_VERSION is not set: which version should be carried?")
queue = [f"diffusers=={version}"]
carried: dict[str, str] = {}
decisions: list[dict] = []
while queue:
    spec = queue.pop(0)
    name = canonicalize_name(Requirement(spec).name)
    if name in carried:
        continue
    wheel = download(spec)
    carried[name] = wheel.name
    for req in requirements(wheel):
        rname = canonicalize_name(req.name)
        if rname in node:
            have = node[rname]
            if have is not None and not req.specifier.contains(Version(have), prereleases=True):
                sys.exit(
                    f"{wheel.name} needs {req}, but the node has {req.name} {have}: carrying another copy could "
                    f"break the node's packages (huggingface-hub: transformers); pick another version of {name}"
                )
            decisions.append({"for": wheel.name, "requirement": str(req), "on_node": have or "yes (version unread)"})
            continue
        here = local_version(req.name)
        pin = f"{req.name}=={here}" if here and req.specifier.contains(Version(here), prereleases=True) else (
            f"{req.name}{req.specifier}" if str(req.specifier) else req.name
        )
        decisions.append({"for": wheel.name, "requirement": str(req), "carried": pin})
        queue.append(pin)

wheels = sorted(w.name for w in dest.glob("*.whl"))
size = sum(w.stat().st_size for w in dest.glob("*.whl"))
(dest / "manifest.json").write_text(json.dumps({"wheels": wheels, "bytes": size, "decisions": decisions}, indent=1))
print(f"[build_wheelhouse] {len(wheels)} wheels, {size / 2**20:.1f} MiB in {dest}:")
for w in wheels:
    print("  ", w)
PYEOF
