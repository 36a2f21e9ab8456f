"""The selection rules (sparse_probe/select.py) at their boundaries, on hand-built paths.

Each test states a decision a user relies on: which point of the path becomes the probe, and
which ``--select`` texts are refused. The paths are built by hand so that every rule's
threshold can be hit exactly, one step inside and one step past it.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sparse_probe.path import Path
from sparse_probe.select import RULES, Selection, parse_rule, select


def make_path(val_acc, nnz, *, lambdas=None, nnz_per_class=None, train_acc=None) -> Path:
    """A path of L points with the given accuracies and sparsity (weights are not used)."""
    val_acc = np.asarray(val_acc, dtype=np.float64)
    L = len(val_acc)
    nnz = np.asarray(nnz)
    if lambdas is None:
        lambdas = np.logspace(0, -(L - 1), L)
    if nnz_per_class is None:
        nnz_per_class = np.stack([nnz, nnz], axis=1) / 2
    if train_acc is None:
        train_acc = np.full(L, 0.5)
    zeros = np.zeros(L)
    return Path(
        lambdas=np.asarray(lambdas, dtype=np.float64), alpha=1.0, grouped=False,
        weights=[np.zeros((2, 3), np.float32)] * L, intercepts=np.zeros((L, 2)),
        mean=np.zeros(3), scale=np.ones(3), nnz=nnz, nnz_per_class=np.asarray(nnz_per_class),
        n_active=nnz, train_acc=np.asarray(train_acc, dtype=np.float64), train_loss=zeros,
        val_acc=val_acc, val_loss=zeros, objective=zeros, kkt_violation=zeros,
        n_iter=zeros, time=zeros,
    )


# ------------------------------------------------------------------ parse_rule
def test_parse_rule_defaults_per_rule():
    assert parse_rule("val_acc_within") == ("val_acc_within", 0.05)
    assert parse_rule("features_per_class") == ("features_per_class", 5.0)
    assert parse_rule("val_acc_within=0.2") == ("val_acc_within", 0.2)
    assert parse_rule(" features_per_class=3") == ("features_per_class", 3.0)
    assert parse_rule("lambda=0.01") == ("lambda", 0.01)


def test_parse_rule_accepts_dashes_for_underscores():
    assert parse_rule("val-acc-within=0.1") == ("val_acc_within", 0.1)
    assert parse_rule("features-per-class") == ("features_per_class", 5.0)


def test_parse_rule_unknown_rule_names_the_rules():
    with pytest.raises(ValueError) as e:
        parse_rule("best=1")
    assert str(e.value) == ("--select: unknown rule 'best'; expected one of "
                            "val_acc_within, features_per_class, lambda")
    with pytest.raises(ValueError, match="unknown rule 'val_acc_within_x'"):
        parse_rule("val_acc_within_x=1")


def test_parse_rule_lambda_needs_a_value():
    with pytest.raises(ValueError) as e:
        parse_rule("lambda")
    assert str(e.value) == "--select: lambda needs a number, got ''"


def test_parse_rule_non_number_and_second_equals_sign():
    with pytest.raises(ValueError) as e:
        parse_rule("features_per_class=five")
    assert str(e.value) == "--select: features_per_class needs a number, got 'five'"
    # the value is everything after the first '=', so the rule name stays recognised
    with pytest.raises(ValueError) as e:
        parse_rule("lambda=1=2")
    assert str(e.value) == "--select: lambda needs a number, got '1=2'"


def test_parse_rule_zero_tolerance_allowed_negative_refused():
    assert parse_rule("val_acc_within=0") == ("val_acc_within", 0.0)
    assert parse_rule("features_per_class=0") == ("features_per_class", 0.0)
    with pytest.raises(ValueError) as e:
        parse_rule("val_acc_within=-0.01")
    assert str(e.value) == "--select: val_acc_within must be positive, got -0.01"
    with pytest.raises(ValueError, match="features_per_class must be positive"):
        parse_rule("features_per_class=-1")


def test_parse_rule_lambda_zero_refused_tiny_lambda_allowed():
    with pytest.raises(ValueError) as e:
        parse_rule("lambda=0")
    assert str(e.value) == "--select: lambda must be positive, got 0.0"
    with pytest.raises(ValueError, match="lambda must be positive"):
        parse_rule("lambda=-1")
    assert parse_rule("lambda=1e-9") == ("lambda", 1e-9)
    assert parse_rule("lambda=0.5") == ("lambda", 0.5)


def test_rules_listed():
    assert RULES == ("val_acc_within", "features_per_class", "lambda")


# ------------------------------------------------------------------ val_acc_within
def test_default_rule_and_tolerance_is_five_points():
    # best 0.90 at the densest point; 0.86 is within 5 points, 0.80 and 0.50 are not
    path = make_path([0.50, 0.80, 0.86, 0.90], [0, 2, 4, 8])
    sel = select(path)
    assert sel == Selection("val_acc_within", 0.05, 2, float(path.lambdas[2]), "val_acc")
    # a tolerance of 0.5 would have taken the sparsest point
    assert select(path, "val_acc_within", 0.5).index == 0


def test_val_acc_within_exactly_at_the_threshold_is_kept_one_past_is_not():
    # binary fractions, so best - value is exact
    at = make_path([0.5, 0.75, 1.0], [1, 2, 3])
    assert select(at, "val_acc_within", 0.25).index == 1
    past = make_path([0.5, 0.75 - 1e-9, 1.0], [1, 2, 3])
    assert select(past, "val_acc_within", 0.25).index == 2
    assert select(at, "val_acc_within", 0.0).index == 2


def test_val_acc_within_takes_fewest_features_not_first_ok_point():
    # point 1 is ok but denser than point 3 (a non-monotone path)
    path = make_path([0.2, 0.9, 0.5, 0.9, 0.95], [0, 9, 4, 3, 12])
    assert select(path, "val_acc_within", 0.05).index == 3


def test_val_acc_within_ties_go_to_larger_lambda():
    path = make_path([0.1, 0.9, 0.9, 0.9], [0, 5, 5, 5])
    sel = select(path, "val_acc_within", 0.05)
    assert sel.index == 1 and sel.lam == float(path.lambdas[1])


def test_val_acc_within_ignores_nan_points():
    path = make_path([np.nan, 0.6, 0.9, np.nan], [0, 2, 4, 6])
    sel = select(path, "val_acc_within", 0.1)
    assert (sel.index, sel.metric) == (2, "val_acc")


def test_val_acc_within_falls_back_to_training_accuracy(caplog):
    path = make_path([np.nan] * 4, [0, 2, 4, 8], train_acc=[0.3, 0.7, 0.98, 1.0])
    with caplog.at_level(logging.WARNING, logger="sparse_probe.select"):
        sel = select(path, "val_acc_within", 0.05)
    assert (sel.index, sel.metric) == (2, "train_acc")
    assert [r.getMessage() for r in caplog.records] == [
        "no validation accuracy on the path; selecting on training accuracy"]


def test_val_acc_within_no_warning_with_validation(caplog):
    path = make_path([0.3, 0.9], [0, 2], train_acc=[0.3, 1.0])
    with caplog.at_level(logging.WARNING, logger="sparse_probe.select"):
        assert select(path).metric == "val_acc"
    assert caplog.records == []


# ------------------------------------------------------------------ features_per_class
def test_features_per_class_densest_point_at_or_below_the_limit():
    # mean features per class: 0, 1, 2, 2.5, 4
    fpc = np.array([[0, 0], [1, 1], [1, 3], [2, 3], [4, 4]])
    path = make_path([0.1] * 5, fpc.sum(1), nnz_per_class=fpc)
    sel = select(path, "features_per_class", 2)
    assert sel == Selection("features_per_class", 2.0, 2, float(path.lambdas[2]),
                            "features_per_class")
    assert select(path, "features_per_class", 2.5).index == 3
    assert select(path, "features_per_class", 2.4999).index == 2
    assert select(path, "features_per_class", 100).index == 4


def test_features_per_class_skips_empty_points_and_falls_back_to_first_nonempty():
    fpc = np.array([[0, 0], [0, 0], [3, 3], [5, 5]])
    path = make_path([0.1] * 4, fpc.sum(1), nnz_per_class=fpc)
    # limit 0: only empty points qualify, which are never chosen -> first with features
    assert select(path, "features_per_class", 0).index == 2
    assert select(path, "features_per_class", 1).index == 2
    assert select(path, "features_per_class", 3).index == 2
    assert select(path, "features_per_class", 5).index == 3


def test_features_per_class_all_empty_path_gives_first_point():
    fpc = np.zeros((3, 2), int)
    path = make_path([0.1] * 3, [0, 0, 0], nnz_per_class=fpc)
    assert select(path, "features_per_class", 5).index == 0


# ------------------------------------------------------------------ lambda
def test_lambda_closest_in_log_scale():
    path = make_path([0.1] * 3, [0, 1, 2], lambdas=[1.0, 0.1, 0.01])
    # 0.05 is closer to 0.01 on a linear scale, to 0.1 on a log scale
    sel = select(path, "lambda", 0.05)
    assert sel == Selection("lambda", 0.05, 1, 0.1, "lambda")
    assert select(path, "lambda", 0.02).index == 2
    assert select(path, "lambda", 5.0).index == 0
    assert select(path, "lambda", 1e-6).index == 2


def test_unknown_rule_in_select():
    path = make_path([0.1, 0.2], [0, 1])
    with pytest.raises(ValueError) as e:
        select(path, "best", 1)
    assert str(e.value) == ("unknown selection rule 'best'; expected one of "
                            "val_acc_within, features_per_class, lambda")


def test_selection_to_json_names_lambda():
    sel = Selection("lambda", 0.1, 3, 0.125, "lambda")
    assert sel.to_json() == {"rule": "lambda", "value": 0.1, "index": 3, "lambda": 0.125,
                             "metric": "lambda"}


def test_features_per_class_a_single_feature_counts_as_used():
    # one nonzero weight (half a feature per class over 2 classes) is a usable point
    fpc = np.array([[0, 0], [1, 0], [1, 0]])
    path = make_path([0.1] * 3, fpc.sum(1), nnz_per_class=fpc)
    assert select(path, "features_per_class", 0).index == 1  # fallback to first used point
    # non-monotone path: the last point within the limit has a single weight
    fpc = np.array([[0, 0], [1, 1], [1, 0]])
    path = make_path([0.1] * 3, fpc.sum(1), nnz_per_class=fpc)
    assert select(path, "features_per_class", 0.5).index == 2
    fpc = np.array([[0, 0], [1, 0], [2, 2]])
    path = make_path([0.1] * 3, fpc.sum(1), nnz_per_class=fpc)
    assert select(path, "features_per_class", 0.1).index == 1
