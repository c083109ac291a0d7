"""Chart helpers shared by every report."""

from __future__ import annotations

import itertools

import pytest

from clusterlens.report._charts import nice_ticks


@pytest.mark.parametrize(
    "lo, hi",
    [(-0.0003, -1e-7), (0.1, 0.7), (-3.0, 1200.0), (0.9745, 0.9812), (-1.3, 2.9)],
)
def test_nice_ticks_are_exact_round_numbers_covering_the_range(lo, hi):
    ticks = nice_ticks(lo, hi)
    step = ticks[1] - ticks[0]
    assert ticks[0] <= lo and ticks[-1] >= hi - 1e-9 * step
    # each tick is printed as the short decimal it is (no 0.30000000000000004,
    # no -2.7e-20 where the axis crosses 0)
    for t in ticks:
        assert float(f"{t:.6g}") == t
    assert all(b > a for a, b in itertools.pairwise(ticks))


def test_a_tick_at_zero_is_zero():
    assert 0.0 in nice_ticks(-0.0003, 0.0)
    assert "0" in [f"{t:.3g}" for t in nice_ticks(-1.0, 1.0)]  # not "-0"


def test_y_tick_labels_tell_close_ticks_apart():
    from clusterlens.report._charts import line_chart

    # a loss that moved by 3e-4 over the run: 3 significant digits would
    # label every tick "-0.164"
    chart = line_chart([1.0, 2.0], {"loss": [-0.16392, -0.16421]}, tip=lambda *a: "")
    labels = [label for _, label in chart.yticks]
    assert len(labels) >= 2 and len(set(labels)) == len(labels)
    assert all(
        abs(float(s) - t) < 1e-12
        for s, t in zip(labels, nice_ticks(-0.16421, -0.16392), strict=True)
    )
    # ordinary ranges keep their short 3-digit labels
    wide = line_chart([1.0, 2.0], {"acc": [0.3, 0.8]}, tip=lambda *a: "")
    assert [label for _, label in wide.yticks] == [
        f"{t:.3g}" for t in nice_ticks(0.3, 0.8)
    ]
