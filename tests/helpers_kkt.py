"""Independent float64 check of a fitted path's KKT claims."""

import numpy as np

from sparse_probe import kkt_violation, objective_f64


def kkt_ratios(X, y, path) -> np.ndarray:
    """Per point, the largest KKT violation (weights and biases) over the point's tolerance,
    shape (L,): float64 gradients of the path's stored (float64) weights on the raw ``X``
    standardized with the path's own ``mean`` and ``scale``. At most 1: the claim holds."""
    out = []
    for i in range(len(path)):
        _, G, gb = objective_f64(X, y, path.weights[i], path.intercepts[i], path.lambdas[i],
                                 path.alpha, mean=path.mean, scale=path.scale, return_grad=True)
        v = max(float(kkt_violation(G, path.weights[i], path.lambdas[i], path.alpha).max()),
                float(np.abs(gb).max()))
        out.append(v / path.info["tol_per_point"][i])
    return np.array(out)
