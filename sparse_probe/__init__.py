"""sparse-probe: sparse decision layers for debuggable deep networks.

Fit the elastic-net regularization path of a multinomial sparse head on deep features
(Wong, Santurkar & Madry, "Leveraging Sparse Linear Layers for Debuggable Deep Networks",
ICML 2021), select the sparse layer, and list the features each class depends on.
"""

from sparse_probe.estimator import SparseProbe
from sparse_probe.fit import fit_path
from sparse_probe.fit_common import column_stats, lambda_path
from sparse_probe.fitting import fit_features
from sparse_probe.head import SparseHead
from sparse_probe.objective import kkt_violation, objective_f64
from sparse_probe.path import Path
from sparse_probe.select import Selection, select

__all__ = [
    "Path",
    "Selection",
    "SparseHead",
    "SparseProbe",
    "column_stats",
    "fit_features",
    "fit_path",
    "kkt_violation",
    "lambda_path",
    "objective_f64",
    "select",
]
