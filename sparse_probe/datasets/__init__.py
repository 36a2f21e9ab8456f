"""Built-in demo datasets with planted spurious cues, and their small models.

- :func:`make_shapes`: procedurally drawn shapes; planted cues (by default a watermark and a
  background texture; also a border stripe and a background tint, each on any class at any
  strength) are tied to classes in train/val and independent of the class in test.
- :func:`make_toxicity`: template-generated comments; identity terms co-occur with the toxic
  label in train/val and not in test.
- :class:`ShapesCNN`, :class:`ToxicityEncoder` and their ``train_*`` functions.
- :func:`prepare_builtin`: dataset + trained model + extracted features in a run directory;
  :func:`load_builtin` regenerates a dataset from its ``meta.json`` description.
"""

from sparse_probe.datasets.models import (
    ShapesCNN,
    ToxicityEncoder,
    images_to_tensor,
    predict_images,
    predict_texts,
    shapes_report,
    torch_threads,
    toxicity_report,
    train_shapes_model,
    train_toxicity_model,
)
from sparse_probe.datasets.prepare import (
    BUILTIN_SIZES,
    builtin_params,
    load_builtin,
    prepare_builtin,
)
from sparse_probe.datasets.shapes import (
    CUE_KINDS,
    CUES,
    MARK_COLOR,
    SHAPE_CLASSES,
    STRIPE_COLOR,
    TINT_SHIFT,
    CueError,
    ShapesDataset,
    ShapesSplit,
    cue_config,
    make_shapes,
    parse_cue,
)
from sparse_probe.datasets.toxicity import (
    IDENTITY_GROUPS,
    IDENTITY_TERMS,
    TOXICITY_CLASSES,
    ToxicityDataset,
    ToxicitySplit,
    load_lexicon,
    make_toxicity,
    token_kind,
    tokenize,
)

__all__ = [
    "BUILTIN_SIZES",
    "CUES",
    "CUE_KINDS",
    "IDENTITY_GROUPS",
    "IDENTITY_TERMS",
    "MARK_COLOR",
    "SHAPE_CLASSES",
    "STRIPE_COLOR",
    "TINT_SHIFT",
    "TOXICITY_CLASSES",
    "CueError",
    "ShapesCNN",
    "ShapesDataset",
    "ShapesSplit",
    "ToxicityDataset",
    "ToxicityEncoder",
    "ToxicitySplit",
    "builtin_params",
    "cue_config",
    "images_to_tensor",
    "load_builtin",
    "load_lexicon",
    "make_shapes",
    "make_toxicity",
    "parse_cue",
    "predict_images",
    "predict_texts",
    "prepare_builtin",
    "shapes_report",
    "token_kind",
    "tokenize",
    "torch_threads",
    "toxicity_report",
    "train_shapes_model",
    "train_toxicity_model",
]
