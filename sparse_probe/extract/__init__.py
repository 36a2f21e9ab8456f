"""Feature extraction: any layer of any model on images, arrays or texts, into ``features/``.

See docs/contracts.md for the files written. Library entry points used by later stages:
:func:`load_model`, :func:`load_split`, :func:`spatial_maps`, :func:`read_meta`.
"""

from sparse_probe.extract.data import DataSource, SplitData, load_split, open_data
from sparse_probe.extract.extractor import (
    LayerReader,
    extract_features,
    find_penultimate_layer,
    find_spatial_layer,
    layer_names,
    read_features,
    spatial_maps,
)
from sparse_probe.extract.meta import read_meta
from sparse_probe.extract.sources import (
    EncodeModule,
    ModelSpec,
    build_model,
    load_model,
    parse_model_spec,
    save_builtin,
)

__all__ = [
    "DataSource",
    "EncodeModule",
    "LayerReader",
    "ModelSpec",
    "SplitData",
    "build_model",
    "extract_features",
    "find_penultimate_layer",
    "find_spatial_layer",
    "layer_names",
    "load_model",
    "load_split",
    "open_data",
    "parse_model_spec",
    "read_features",
    "read_meta",
    "save_builtin",
    "spatial_maps",
]
