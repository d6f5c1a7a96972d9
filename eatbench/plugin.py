"""The eatbench pytest plugin (registered under the ``pytest11`` entry point)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("eatbench", "eatbench benchmark suite")
    group.addoption(
        "--backend",
        dest="eat_backend",
        default="sim",
        choices=("sim", "gpu"),
        help="execution backend for the benchmarks (default: %(default)r)",
    )
    group.addoption(
        "--eat-report",
        dest="eat_report",
        default="reports",
        metavar="DIR",
        help="where benchmark result files and markdown summaries go (default: %(default)r)",
    )
    group.addoption(
        "--eat-seeds",
        dest="eat_seeds",
        default=5,
        type=int,
        metavar="N",
        help="seeds per point (default: %(default)r)",
    )
