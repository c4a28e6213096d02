"""A job record whose rounds diverged (a NaN or infinite objective) is still readable."""

from __future__ import annotations

import math

import pytest

from zootrain.records import RoundPoint, RoundProgress


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_objective_round_trips_as_null(value: float) -> None:
    # Found by the contract fuzz: logistic_regression in rounds with C near 0 made the L-BFGS
    # objective NaN; the job record then held null where a number was required, and reading it
    # failed everywhere (GET /v1/jobs 500, the job never ended).
    progress = RoundProgress(
        round=1,
        objective=value,
        change=value,
        history=[RoundPoint(round=0, objective=value, change=value)],
    )
    read = RoundProgress.model_validate_json(progress.model_dump_json())
    assert read.objective is None
    assert read.history[0].objective is None
    assert read.history[0].round == 0
