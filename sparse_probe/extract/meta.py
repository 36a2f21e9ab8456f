"""Reading and writing ``features/meta.json``: thin names over :mod:`sparse_probe.rundir`."""

from __future__ import annotations

from sparse_probe.rundir import FEATURES_FORMAT as FORMAT
from sparse_probe.rundir import read_features_meta as read_meta

__all__ = ["FORMAT", "read_meta"]
