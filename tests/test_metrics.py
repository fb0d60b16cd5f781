"""Tests for bartsmiles.core.metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from bartsmiles.core.metrics import METRIC_DIRECTION, prc_auc, rmse, roc_auc, score

NAN = float("nan")


def test_roc_auc_single_task_matches_sklearn():
    y, p = [0, 1, 1, 0, 1], [0.1, 0.8, 0.4, 0.5, 0.9]
    mean, per = roc_auc(y, p)
    assert mean == pytest.approx(roc_auc_score(y, p)) and per == [pytest.approx(mean)]


def test_roc_auc_masks_nan_and_skips_one_class_tasks():
    y = np.array([[0, 1, NAN], [1, 1, 0], [NAN, 1, 1], [1, 1, NAN], [0, 1, 0]])
    p = np.array([[0.2, 0.3, 0.1], [0.9, 0.4, 0.2], [0.5, 0.5, 0.8], [0.1, 0.6, NAN], [0.3, 0.7, 0.3]])
    mean, per = roc_auc(y, p)
    t0 = roc_auc_score([0, 1, 1, 0], [0.2, 0.9, 0.1, 0.3])
    t2 = roc_auc_score([0, 1, 0], [0.1, 0.8, 0.3])
    assert per[1] is None
    assert per[0] == pytest.approx(t0) and per[2] == pytest.approx(t2)
    assert mean == pytest.approx((t0 + t2) / 2)


def test_roc_auc_no_flipping():
    mean, _ = roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])
    assert mean == 0.0


def test_prc_auc_matches_average_precision():
    y = np.array([[1, 0], [0, NAN], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.3, 0.5], [0.2, 0.7], [0.4, 0.1]])
    mean, per = prc_auc(y, p)
    a = average_precision_score([1, 0, 1, 0], [0.9, 0.3, 0.2, 0.4])
    b = average_precision_score([0, 1, 0], [0.2, 0.7, 0.1])
    assert per == [pytest.approx(a), pytest.approx(b)] and mean == pytest.approx((a + b) / 2)


def test_rmse_masked():
    assert rmse([1.0, 2.0, NAN], [2.0, 2.0, 100.0]) == pytest.approx(math.sqrt(0.5))
    assert rmse(np.array([[1.0, NAN], [3.0, 0.0]]), np.array([[1.0, 5.0], [1.0, 0.0]])) == pytest.approx(
        math.sqrt(4 / 3))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: roc_auc([0, 1], [0.5]), "shape"),
        (lambda: roc_auc([0, 2, 1], [0.1, 0.2, 0.3]), "0 or 1"),
        (lambda: roc_auc([1, 1, NAN], [0.1, 0.2, 0.3]), "nothing to score"),
        (lambda: roc_auc([0, 1], [0.1, NAN]), "row 1"),
        (lambda: rmse([NAN, NAN], [1.0, 2.0]), "missing"),
        (lambda: rmse([], []), "no rows"),
        (lambda: score("accuracy", [0, 1], [0, 1]), "unknown metric"),
    ],
)
def test_bad_input_fails_loudly(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_score_dispatch_and_direction():
    y, p = [0, 1, 0, 1], [0.1, 0.9, 0.2, 0.3]
    assert score("roc_auc", y, p) == roc_auc(y, p)[0]
    assert score("prc_auc", y, p) == prc_auc(y, p)[0]
    assert score("rmse", [1.0, 2.0], [1.0, 4.0]) == pytest.approx(math.sqrt(2))
    assert METRIC_DIRECTION == {"roc_auc": "max", "prc_auc": "max", "rmse": "min"}
