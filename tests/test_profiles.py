"""Latency profiles and quality curves."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from eatbench.core.config import ConfigError
from eatbench.engine.cluster import GpuKind
from eatbench.engine.profiles import (
    QUALITY_CURVES,
    LatencyProfile,
    MonotoneQuality,
    PaperQuality,
    ProfileRow,
    TableQuality,
    build_h100_sd15_rows,
    h100_sd15_profile,
    load_profile,
    paper_profile,
)

REPO = Path(__file__).resolve().parents[1]
# a copy of the team's H100 probe (shared/data), shipped with the tests so that they read only
# files inside the repository
PROBE = REPO / "tests" / "data" / "h100_sd_probe.jsonl"


@pytest.mark.parametrize(
    "k, steps, cold, expected",
    [(1, 20, False, 6.3), (1, 20, True, 30.3), (2, 20, True, 27.125), (4, 10, True, 33.4), (8, 32, False, 3.2)],
)
def test_paper_profile_matches_the_published_formula(k, steps, cold, expected):
    assert paper_profile().duration(["paper_gpu"] * k, "sd14", 1440, steps, cold) == pytest.approx(expected)


def test_paper_profile_applies_to_any_resolution_and_rejects_unknown_k_model_kind():
    p = paper_profile()
    assert p.duration(["paper_gpu"], "sd14", 512, 10, False) == pytest.approx(3.15)
    with pytest.raises(ConfigError, match="allowed k"):
        p.duration(["paper_gpu"] * 3, "sd14", 1440, 10, False)
    with pytest.raises(ConfigError, match="no model 'sdxl'"):
        p.duration(["paper_gpu"], "sdxl", 1440, 10, False)
    with pytest.raises(ConfigError, match="no GPU kind 'a100'"):
        p.duration(["a100"], "sd14", 1440, 10, False)


def test_relative_gpu_kinds_scale_step_time_and_mixed_gangs_run_at_the_slowest_pace():
    kinds = {"paper_gpu": GpuKind("paper_gpu"), "fast": GpuKind("fast", 2.0, "paper_gpu")}
    p = paper_profile().with_gpu_kinds(kinds)
    assert p.duration(["fast"], "sd14", 1440, 20, False) == pytest.approx(6.3 / 2)
    assert p.duration(["fast"], "sd14", 1440, 20, True) == pytest.approx(6.3 / 2 + 24)  # cold start kept
    assert p.duration(["fast", "paper_gpu"], "sd14", 1440, 20, False) == pytest.approx(0.15625 * 20)


def test_resolution_is_interpolated_in_pixels_and_bounded():
    rows = [ProfileRow("g", "m", 512, 1, 0.1, 1.0, 2.0), ProfileRow("g", "m", 1024, 1, 0.4, 2.0, 2.0)]
    p = LatencyProfile(rows, "t")
    t = (768**2 - 512**2) / (1024**2 - 512**2)
    assert p.coefficients("g", "m", 768, 1) == pytest.approx((0.1 + 0.3 * t, 1.0 + t, 2.0))
    with pytest.raises(ConfigError, match="covers resolutions 512..1024"):
        p.coefficients("g", "m", 2048, 1)


def test_h100_profile_is_rebuilt_from_the_probe_exactly():
    shipped = h100_sd15_profile()
    assert shipped.rows == build_h100_sd15_rows(PROBE)
    row = next(r for r in shipped.rows if r.resolution == 512 and r.k == 1)
    assert row.step_s == pytest.approx(0.029286)  # the probe's 29.3 ms CFG step
    assert row.cold_start_s == pytest.approx((0.672 + 1.022) / 2)
    # 20 steps at 512 px on one H100, warm: about 0.6 s + encode/decode
    assert shipped.duration(["h100"], "sd15", 512, 20, False) == pytest.approx(20 * 0.029286 + 0.037922)


def test_profile_csv_round_trip_and_errors(tmp_path):
    path = tmp_path / "p.csv"
    paper_profile().to_csv(path, comment="test")
    loaded = load_profile("csv", str(path))
    assert loaded.rows == paper_profile().rows
    with pytest.raises(ConfigError, match="does not exist"):
        load_profile("csv", str(tmp_path / "missing.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("gpu_kind,model\nx,y\n")
    with pytest.raises(ConfigError, match="lacks columns"):
        LatencyProfile.from_csv(bad)


def test_paper_quality_curve_values():
    q = PaperQuality()
    assert q(4) == 0.0
    assert q(5) == pytest.approx(0.16 * math.log(5, 6) - 0.02)
    assert q(6) == pytest.approx(0.14)
    assert q(30) == pytest.approx(0.16 * math.log(30, 6) - 0.02)
    assert q(31) == 0.27  # the published drop above 30 steps
    assert 0.11 < q(5) < 0.13 and 0.28 < q(30) < 0.29


def test_monotone_quality_never_decreases():
    q = MonotoneQuality()
    values = [q(s) for s in range(0, 64)]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    assert q(50) == pytest.approx(PaperQuality()(30))


def test_table_quality_interpolates_a_measured_curve(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("steps,quality,quality_ci95\n5,0.20,0.01\n25,0.30,0.01\n")
    q = TableQuality(str(path))
    assert q(15) == pytest.approx(0.25)
    assert q(1) == pytest.approx(0.20) and q(40) == pytest.approx(0.30)
    assert QUALITY_CURVES.create("table", path=str(path))(5) == pytest.approx(0.2)
    with pytest.raises(ConfigError, match="quality.path"):
        TableQuality(str(tmp_path / "none.csv"))
