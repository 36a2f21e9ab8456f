"""Third-party-style text models for the counterfactual CLI tests (importable as MODULE:ATTR).

Each keys on the word 'muslim' (toxic) the way a biased classifier would; they differ only in
what they return: 1-D probabilities, logits, NaN or out-of-range values.
"""

from __future__ import annotations

import re

import numpy as np


def _p(texts) -> np.ndarray:
    return np.array([0.9 if re.search(r"\bmuslim\b", t.lower()) else 0.1 for t in texts])


def binary_model(texts):
    """Probability of the toxic class only, shape (n,) (scikit-learn style binary output)."""
    return _p(texts)


def logit_model(texts):
    """Logits (n, 2): softmax gives the same decisions as :func:`binary_model`."""
    p = _p(texts)
    return np.stack([np.zeros_like(p), np.log(p / (1 - p))], axis=1)


def nan_model(texts):
    """NaN for every text that mentions a term (a broken model)."""
    p = _p(texts)
    p[p > 0.5] = np.nan
    return np.stack([1 - p, p], axis=1)


def scores_model(texts):
    """Scores in [-3, 3], not probabilities."""
    return np.stack([-3 * _p(texts), 3 * _p(texts)], axis=1)


def one_column_model(texts):
    """Shape (n, 1): the toxic probability as a column."""
    return _p(texts)[:, None]
