"""The summary quotes a fitted GP with the digits it has: locations to 2 significant digits
(never rounding away integer digits), a posterior mean to the decimal of its SD's second
significant digit."""

from __future__ import annotations

import math

import pytest

from dashboards._summary import _sig, _with_sd


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.05185, "0.052"),
        (0.1667, "0.17"),
        (0.01531, "0.015"),
        (0.0, "0"),
        (0.75, "0.75"),
        (2.54, "2.5"),
        (384.4, "384"),
        (12345.0, "12345"),
        (3e-4, "0.0003"),
        (math.nan, "n/a"),
    ],
)
def test_locations(value: float, text: str) -> None:
    assert _sig(value) == text


@pytest.mark.parametrize(
    ("mean", "sd", "text"),
    [
        (1.898, 0.01224, "1.898 ± 0.012"),
        (2.56351, 0.0031, "2.5635 ± 0.0031"),
        (150.2, 12.3, "150 ± 12"),
        (0.5, 0.25, "0.50 ± 0.25"),
    ],
)
def test_mean_with_sd(mean: float, sd: float, text: str) -> None:
    assert _with_sd(mean, sd) == text
