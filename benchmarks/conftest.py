"""Collect ``bench_*.py`` modules here (the eatbench fixtures come from the plugin).

``pytest benchmarks`` runs the main job (``bench_main.py``) and one module per report
figure; see ``eatbench/plugin.py`` for the options.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Module | None:
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
