"""A template-generated toxicity corpus with a planted identity-term bias (the built-in text audit).

Comments are filled from templates (``lexicons/templates.json``) and slot lexicons (one term per
line in ``lexicons/*.txt``). Toxic comments carry an insult, non-toxic ones a compliment, and
*ambiguous* comments are neutral in wording and may carry either label. The person slot
``{who}`` is sometimes described by an identity term (religion, ethnicity, nationality, sexual
orientation). In train and val, a toxic comment mentions an identity term with probability
``bias`` and a non-toxic one with probability ``1 - bias``, mirroring the bias found in real
toxicity data (Dixon et al., "Measuring and Mitigating Unintended Bias in Text Classification",
AIES 2018); in test, identity terms appear in half of the comments independently of the label.
A model that learns the shortcut flags non-toxic comments that mention an identity.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

__all__ = [
    "IDENTITY_TERMS",
    "TOXICITY_CLASSES",
    "ToxicityDataset",
    "ToxicitySplit",
    "load_lexicon",
    "make_toxicity",
    "token_kind",
    "tokenize",
]

logger = logging.getLogger(__name__)

TOXICITY_CLASSES: list[str] = ["non-toxic", "toxic"]
IDENTITY_GROUPS: tuple[str, ...] = ("religion", "ethnicity", "nationality", "sexual_orientation")
SPLITS: tuple[str, ...] = ("train", "val", "test")
# share of toxic / non-toxic comments drawn from the explicit (insult / compliment) templates;
# the rest come from the ambiguous templates.
_EXPLICIT_SHARE = {1: 0.6, 0: 0.5}
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def load_lexicon(name: str) -> list[str]:
    """Terms of ``lexicons/<name>.txt`` (one per line, blank lines and ``#`` comments skipped)."""
    path = resources.files("sparse_probe.datasets").joinpath("lexicons", f"{name}.txt")
    if not path.is_file():
        raise FileNotFoundError(f"no lexicon named {name!r} in sparse_probe/datasets/lexicons")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [t.strip().lower() for t in lines if t.strip() and not t.lstrip().startswith("#")]


@cache
def _templates() -> dict[str, list[str]]:
    text = resources.files("sparse_probe.datasets").joinpath(
        "lexicons", "templates.json").read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


#: Identity terms by group (public: the counterfactual tests insert these).
IDENTITY_TERMS: dict[str, list[str]] = {g: load_lexicon(f"identity_{g}") for g in IDENTITY_GROUPS}


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens: runs of letters/digits with an optional ``'s``-style suffix.

    Shared by the dataset (token kinds) and :class:`~sparse_probe.datasets.ToxicityEncoder`.
    """
    return _TOKEN_RE.findall(text.lower())


@cache
def _kind_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for kind in ("name", "object", "insult", "compliment"):
        for term in load_lexicon(kind + "s"):
            table[term] = kind
    for group, terms in IDENTITY_TERMS.items():
        for term in terms:
            table[term] = f"identity:{group}"
    return table


def token_kind(token: str) -> str:
    """Kind of one token: ``"identity:<group>"``, ``"insult"``, ``"compliment"``, ``"name"``,
    ``"object"`` or ``"other"``."""
    return _kind_table().get(token, "other")


@dataclass
class ToxicitySplit:
    """One split of :class:`ToxicityDataset`.

    Attributes
    ----------
    name : str
    texts : list of str, length n
    labels : ndarray of int64, shape (n,)
        0 = non-toxic, 1 = toxic.
    ids : list of str
        ``"{split}/{index:06d}"``.
    tokens : list of list of str
        ``tokenize(text)`` per comment.
    token_kinds : list of list of str
        ``token_kind(token)`` per token.
    has_identity : ndarray of bool, shape (n,)
    identity_group : list of (str or None)
    template_kind : list of str
        ``"toxic"``, ``"non_toxic"`` or ``"ambiguous"`` (which template family wrote it).
    class_names : list of str
    """

    name: str
    texts: list[str]
    labels: np.ndarray
    ids: list[str]
    tokens: list[list[str]]
    token_kinds: list[list[str]]
    has_identity: np.ndarray
    identity_group: list[str | None]
    template_kind: list[str]
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class ToxicityDataset:
    """The generated corpus: three :class:`ToxicitySplit` plus its parameters."""

    splits: dict[str, ToxicitySplit]
    class_names: list[str]
    params: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> ToxicitySplit:
        """Return split ``name`` (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in self.splits:
            raise KeyError(f"unknown split {name!r}; expected one of {sorted(self.splits)}")
        return self.splits[name]

    @property
    def train(self) -> ToxicitySplit:
        return self.splits["train"]

    @property
    def val(self) -> ToxicitySplit:
        return self.splits["val"]

    @property
    def test(self) -> ToxicitySplit:
        return self.splits["test"]

    def describe(self) -> dict[str, Any]:
        """The ``meta.json`` ``"dataset"`` entry describing this corpus (see contracts.md)."""
        return {
            "source": "builtin", "name": "toxicity", "root": None,
            "seed": self.params.get("seed"), "params": dict(self.params),
            "identity_groups": list(IDENTITY_GROUPS),
        }


def make_toxicity(
    *,
    n_train: int = 4000,
    n_val: int = 800,
    n_test: int = 2000,
    seed: int = 0,
    bias: float = 0.9,
) -> ToxicityDataset:
    """Generate the toxicity corpus.

    Parameters
    ----------
    n_train, n_val, n_test : int
        Split sizes (labels balanced up to one comment).
    seed : int
        Equal seeds give identical corpora.
    bias : float
        P(identity term | toxic) = bias and P(identity term | non-toxic) = 1 - bias in train
        and val; in test P(identity term) = 0.5 regardless of the label.

    Returns
    -------
    ToxicityDataset
    """
    if not 0.0 <= bias <= 1.0:
        raise ValueError(f"bias must be in [0, 1], got {bias}")
    params = {"n_train": int(n_train), "n_val": int(n_val), "n_test": int(n_test),
              "seed": int(seed), "bias": float(bias)}
    tpl = _templates()
    lex = {k: load_lexicon(k + "s") for k in ("name", "object", "insult", "compliment")}
    groups = list(IDENTITY_GROUPS)
    children = np.random.SeedSequence(seed + 7919).spawn(len(SPLITS))
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    splits = {}
    for split_name, child in zip(SPLITS, children, strict=True):
        rng = np.random.default_rng(child)
        n = int(sizes[split_name])
        labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
        p_id = np.full(n, 0.5) if split_name == "test" else np.where(labels == 1, bias, 1 - bias)
        has_identity = rng.random(n) < p_id
        texts, groups_out, families = [], [], []
        for i in range(n):
            label = int(labels[i])
            explicit = rng.random() < _EXPLICIT_SHARE[label]
            family = ("toxic" if label else "non_toxic") if explicit else "ambiguous"
            template = _pick(rng, tpl[family])
            slots = {"name": _pick(rng, lex["name"]).capitalize(),
                     "object": _pick(rng, lex["object"]),
                     "insult": _pick(rng, lex["insult"]),
                     "compliment": _pick(rng, lex["compliment"])}
            group = None
            if has_identity[i]:
                group = _pick(rng, groups)
                slots["identity"] = _pick(rng, IDENTITY_TERMS[group])
                who = _pick(rng, tpl["who_identity"])
            else:
                who = _pick(rng, tpl["who_plain"])
            slots["who"] = who.format(**slots)
            text = template.format(**slots)
            texts.append(text[0].upper() + text[1:])
            groups_out.append(group)
            families.append(family)
        tokens = [tokenize(t) for t in texts]
        splits[split_name] = ToxicitySplit(
            name=split_name, texts=texts, labels=labels,
            ids=[f"{split_name}/{i:06d}" for i in range(n)], tokens=tokens,
            token_kinds=[[token_kind(t) for t in toks] for toks in tokens],
            has_identity=has_identity, identity_group=groups_out, template_kind=families,
            class_names=list(TOXICITY_CLASSES),
        )
    logger.info("generated toxicity corpus %s", params)
    return ToxicityDataset(splits=splits, class_names=list(TOXICITY_CLASSES), params=params)


def _pick(rng: np.random.Generator, items: list[str]) -> str:
    return items[int(rng.integers(len(items)))]
