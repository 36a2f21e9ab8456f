"""Quadratic programs shared by the model-solve tests (test_newton, test_solver_work,
test_gram_cd)."""

import numpy as np


def singular_model(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A singular Gram model ``(Q (80, 80), q (80,))``: its last 10 columns exact linear
    combinations of the first 10 (collinear features), over 400 rows. With a tiny ridge
    coordinate descent crawls on it (500 sweeps leave a violation of ~5e-6 at l1 = 1e-2)."""
    rs = np.random.default_rng(seed)
    A = rs.standard_normal((400, 80))
    A[:, 70:] = A[:, :10] @ rs.standard_normal((10, 10)) * 0.5
    return A.T @ A / 400, A.T @ rs.standard_normal(400) / 400
