"""F8: ablations of EAT (eat_nodiff, eat_wide) on the paper setting, when trained."""

import pytest
from _figures import check_figure


def test_f8_ablations(eat_session):
    result = eat_session.sweep("ablations")
    ran = {r.config.scheduler.name for r in result.results}
    if not ran & {"eat", "eat_nodiff", "eat_wide"}:
        pytest.skip(f"F8: no EAT variant could run ({'; '.join(f'{k}: {v}' for k, v in result.skipped.items())})")
    runs = check_figure(eat_session, "ablations", "F8", "rate", ("response_mean", "quality_mean"))
    assert "greedy" in set(runs["scheduler"])  # the reference line
