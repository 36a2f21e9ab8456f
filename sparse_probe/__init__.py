"""sparse-probe: sparse decision layers for debuggable deep networks.

Fit the elastic-net regularization path of a multinomial sparse head on deep features
(Wong, Santurkar & Madry, "Leveraging Sparse Linear Layers for Debuggable Deep Networks",
ICML 2021), select the sparse layer, and list the features each class depends on.
"""

import importlib
from typing import Any

# Public names are imported on first use (PEP 562): ``import sparse_probe`` (and every
# ``sparse_probe.<module>`` import, e.g. the answers table in ``sparse-probe report``) must not
# pay for torch and scikit-learn. ``from sparse_probe import SparseProbe`` works as before.
# ``Path`` and ``select`` (numpy only) are bound now: the function ``select`` must shadow the
# submodule of the same name, as it always has.
from sparse_probe.path import Path
from sparse_probe.select import Selection, select

_LAZY = {
    "SparseHead": "sparse_probe.head",
    "SparseProbe": "sparse_probe.estimator",
    "column_stats": "sparse_probe.fit_common",
    "fit_features": "sparse_probe.fitting",
    "fit_path": "sparse_probe.fit",
    "kkt_violation": "sparse_probe.objective",
    "lambda_path": "sparse_probe.fit_common",
    "objective_f64": "sparse_probe.objective",
}

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sparse_probe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
