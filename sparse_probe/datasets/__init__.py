"""Built-in demo datasets with planted spurious cues, and their small models.

- :func:`make_shapes`: procedurally drawn shapes; a watermark and a background texture are
  tied to two classes in train/val and independent of the class in test.
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
    CUES,
    MARK_COLOR,
    SHAPE_CLASSES,
    ShapesDataset,
    ShapesSplit,
    make_shapes,
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
    "IDENTITY_GROUPS",
    "IDENTITY_TERMS",
    "MARK_COLOR",
    "SHAPE_CLASSES",
    "TOXICITY_CLASSES",
    "ShapesCNN",
    "ShapesDataset",
    "ShapesSplit",
    "ToxicityDataset",
    "ToxicityEncoder",
    "ToxicitySplit",
    "builtin_params",
    "images_to_tensor",
    "load_builtin",
    "load_lexicon",
    "make_shapes",
    "make_toxicity",
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
