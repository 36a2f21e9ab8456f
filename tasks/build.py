"""Build the HITs of an audit: visual evidence, pages, manifest, MTurk batch files.

``build_tasks(probe_dir, features_dir, out_dir)`` reads ``probe/probe.json`` (top features per
class) and ``features/`` (feature values, ids, ``meta.json``), renders for every (class, top
feature) its evidence (top-activating examples, heatmaps or token attributions, a feature
visualization, word clouds) into ``assets/``, one page per HIT into ``hits/``, the manifest
(``manifest.jsonl``, fields per docs/contracts.md), ``template.html`` + ``batch.csv`` for
MTurk's requester website, and ``questions.json``: the question schema the pages ask
(:mod:`sparse_probe.questions`), which the server and the report read back. Gold
(known-answer) HITs, which score workers, show features outside the audit (never a feature
whose verdict is being decided) and look like the others. Output is deterministic for a seed
and written atomically.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from markupsafe import Markup
from tqdm.auto import tqdm

from sparse_probe.probe import probe_features_fingerprint, probe_fingerprint
from sparse_probe.questions import ATTENTION, SCHEMA_FILE, QuestionSchema, default_schema
from sparse_probe.rundir import (
    RUN_RECORD,
    RunMismatchError,
    check_same_run,
    features_fingerprint,
    fingerprint_of,
    recorded_path,
    write_run_record,
    write_text,
)
from tasks.cost import DEFAULT_ASSIGNMENTS, CostEstimate, estimate_cost, parse_reward
from tasks.hit_render import (
    COLOUR_NOTE,
    DETAIL_NOTE,
    PANEL_TEXT,
    render_hit,
    render_mturk_template,
    render_text_panels,
)
from tasks.question_xml import ASSET_PREFIX, QuestionTooLargeError, html_question, retarget_assets
from tasks.viz.evidence import (
    DOMINANT_SHARE,
    dominant_share,
    reader_evidence,
    text_evidence,
    truth_from_evidence,
)
from tasks.viz.fvis.render import visualize_channels
from tasks.viz.grid import image_grid, overlay, save_png
from tasks.viz.intervention import feature_removal, text_feature_removal
from tasks.viz.panels import HIT_PANELS, MAP_PANELS, panel_evidence
from tasks.viz.source import ExampleSource, load_source
from tasks.viz.text_attr import highlight_html, occlusion_attributions, word_scores
from tasks.viz.text_panels import (
    associated_words,
    candidate_words,
    highlight_contrast,
    insertion_ranking,
    kind_shares,
    least_rows,
    ordinary_rows,
    text_reader_evidence,
    typical_words,
    word_kinds,
)
from tasks.viz.topk import direction_for, top_k
from tasks.viz.wordcloud import cloud_html, cloud_png

__all__ = ["LONG_BASE_URL", "BuildError", "BuildResult", "HitSpec", "build_tasks"]

logger = logging.getLogger(__name__)

#: Dummy asset base used to check that a retargeted page still fits MTurk's 64 KB limit.
LONG_BASE_URL = "https://" + "assets-" * 8 + "example.com/" + "b" * 64 + "/assets/"
DEFAULT_ASSET_BASE_URL = "https://example.com/sparse-probe/assets/"
GOLD_MIN_SHARE = 0.6
LAYERS = ("sparse", "dense")


class BuildError(ValueError):
    """Bad inputs to the build, or a HIT that cannot be published as built."""


@dataclass
class HitSpec:
    """One HIT while it is being built (the manifest record is :meth:`record`)."""

    hit_key: str
    kind: str
    layer: str
    cls: int
    class_name: str
    feature: int
    weight: float
    rank: int
    direction: str
    examples: np.ndarray
    example_ids: list[str]
    attention: str
    assets: dict[str, str] = field(default_factory=dict)
    evidence: dict | None = None
    truth: str | None = None
    is_gold: bool = False
    gold: dict | None = None
    texts: list[Markup] = field(default_factory=list)
    cloud: Markup = field(default_factory=Markup)
    words: dict[str, float] = field(default_factory=dict)
    heat_empty: bool = False
    heat_panel: str = ""  # the map panel shown as "heat"
    contrast: dict[str, dict[str, float]] = field(default_factory=dict)
    colour: float | None = None  # image: share of the feature left in greyscale
    detail: float | None = None  # image: share of the feature left with the images blurred
    evidence_panels: dict[str, dict] | None = None
    evidence_images: dict[str, dict[str, float]] | None = None
    gold_candidate: bool = False  # a feature outside the audit, rendered to become a gold item
    insertion: list[tuple[str, float]] = field(default_factory=list)  # text: words that push it
    insertion_typical: list[tuple[str, float]] = field(default_factory=list)  # text: random words
    text_contrast: dict[str, float] | None = None  # text: highlighted words removed / kept
    least_texts: list[str] = field(default_factory=list)  # text: class's least-activating
    removal: dict | None = None  # built-in data: the feature's share each region carries
    truth_removal: str | None = None  # the truth by intervention (tasks.viz.intervention)
    truth_maps: str | None = None  # the truth the maps imply, where the intervention decides

    def decide_by_intervention(self, check: dict | None) -> None:
        """Take the truth by intervention (``{"removal", "truth"}`` from
        :mod:`tasks.viz.intervention`, or None: not measurable) as the HIT's truth: no map or
        panel enters it; the truth the maps imply is kept in ``truth_maps``."""
        if check is not None:
            self.removal, self.truth_removal = check["removal"], check["truth"]
            self.truth_maps, self.truth = self.truth, check["truth"]

    def record(self) -> dict[str, Any]:
        """The manifest line (docs/contracts.md, tasks/)."""
        return {
            "hit_key": self.hit_key, "kind": self.kind, "layer": self.layer, "class": self.cls,
            "class_name": self.class_name, "feature": self.feature, "weight": self.weight,
            "rank": self.rank, "direction": self.direction, "html": f"hits/{self.hit_key}.html",
            "assets": dict(self.assets), "example_ids": list(self.example_ids),
            "is_gold": self.is_gold, "gold": self.gold,
            "attention": {"field": "attention", "expected": self.attention},
            "evidence": self.evidence, "evidence_panels": self.evidence_panels,
            "evidence_images": self.evidence_images, "colour": self.colour,
            "detail": self.detail,
            "truth": self.truth,
            "removal": self.removal, "truth_removal": self.truth_removal,
            "truth_maps": self.truth_maps,
        }


@dataclass
class BuildResult:
    """What :func:`build_tasks` wrote.

    Attributes
    ----------
    out_dir : Path
    manifest : list of dict
        The manifest records, in file order.
    cost : CostEstimate
        Rewards + MTurk fees for publishing every HIT.
    """

    out_dir: Path
    manifest: list[dict]
    cost: CostEstimate

    @property
    def n_hits(self) -> int:
        return len(self.manifest)

    @property
    def n_gold(self) -> int:
        return sum(r["is_gold"] for r in self.manifest)

    @property
    def hit_keys(self) -> list[str]:
        return [r["hit_key"] for r in self.manifest]


# --------------------------------------------------------------------------- inputs


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BuildError(f"{path}: not found ({what})") from None
    except json.JSONDecodeError as exc:
        raise BuildError(f"{path}: not valid JSON ({exc})") from None


def _top_entries(probe: Mapping, probe_path: Path, layer: str, k: int) -> list[dict]:
    tops = probe.get("top_features")
    if not isinstance(tops, Mapping) or layer not in tops:
        raise BuildError(f"{probe_path}: field top_features.{layer} missing (expected a list of "
                         "{class, class_name, feature, weight, rank})")
    by_class: dict[int, list[dict]] = {}
    for i, e in enumerate(tops[layer]):
        try:
            item = {"class": int(e["class"]), "class_name": str(e["class_name"]),
                    "feature": int(e["feature"]), "weight": float(e["weight"]),
                    "rank": int(e["rank"])}
        except (KeyError, TypeError, ValueError) as exc:
            raise BuildError(f"{probe_path}: top_features.{layer}[{i}] is malformed ({exc!r}); "
                             "expected {class, class_name, feature, weight, rank}") from None
        if item["weight"] == 0:
            continue
        by_class.setdefault(item["class"], []).append(item)
    out = []
    for c in sorted(by_class):
        out.extend(sorted(by_class[c], key=lambda e: e["rank"])[:k])
    return out


def _load_gold_file(path: Path, schema: QuestionSchema) -> dict[str, dict[str, str]]:
    fields = schema.gold_fields
    data = _read_json(path, "gold answers")
    items = data.items() if isinstance(data, Mapping) else None
    if items is None:
        if not isinstance(data, list):
            raise BuildError(f"{path}: expected an object {{hit_key: {{{', '.join(fields)}}}}} "
                             f"or a list of {{hit_key, {', '.join(fields)}}}")
        items = [(str(e.get("hit_key")), e) for e in data]
    gold = {}
    for key, ans in items:
        if not isinstance(ans, Mapping):
            raise BuildError(f"{path}: gold answer of {key!r} must be an object with "
                             f"{', '.join(fields)}")
        for f in fields:
            allowed = schema[f].allowed()
            if ans.get(f) not in allowed:
                raise BuildError(f"{path}: gold answer of {key!r} must have {f} in "
                                 f"{'/'.join(allowed)}, got {ans.get(f)!r}")
        gold[str(key)] = {f: ans[f] for f in fields}
    return gold


def _hit_rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


# --------------------------------------------------------------------------- evidence


def _overlay_grid(images: torch.Tensor, shown: np.ndarray) -> Any:
    """The images with a map over them, 3 per row (sqrt brightens the weaker part of the hot
    region; the support, i.e. what is coloured, is unchanged)."""
    return image_grid(overlay(images, np.sqrt(shown)), ncols=3)


def _render_image_assets(src: ExampleSource, hits: list[HitSpec], stage: Path,
                         device: torch.device, seed: int, fvis_steps: int, fvis_size: int,
                         n_class_examples: int, labels: np.ndarray, values: np.ndarray,
                         heat_floor: float, panels: tuple[str, ...], lime_samples: int,
                         progress: bool) -> None:
    """Every image HIT's panels (:mod:`tasks.viz.panels`): the top images, the first map
    panel as ``heat``, the other map panels under their own names, the contrast images of the
    ``heat`` map (its region removed, then only it kept), the class's least-activating images
    (``least``), the feature visualization; and, with ground truth, each map's evidence and
    the evidence a careful reader takes from them (:func:`tasks.viz.evidence.reader_evidence`)."""
    assets = stage / "assets"
    for c in sorted({h.cls for h in hits}):
        idx = np.flatnonzero(labels == c)[:n_class_examples]
        name = f"class-c{c:02d}-examples.png"
        if len(idx):
            save_png(image_grid(src.images[idx], ncols=min(len(idx), 6)), assets / name)
        for h in hits:
            if h.cls == c and len(idx):
                h.assets["class_examples"] = f"assets/{name}"
    if src.spatial is None and src.features is None:
        raise BuildError("image source has neither spatial maps nor a feature function")
    for h in tqdm(hits, desc="evidence panels", unit="feature", disable=not progress):
        imgs = src.images[h.examples]
        pe = panel_evidence(src, h.examples, h.feature, h.weight, panels=panels, device=device,
                            floor=heat_floor, lime_samples=lime_samples, seed=seed)
        if not pe.shown:
            raise BuildError(f"HIT {h.hit_key}: none of the panels {', '.join(panels)} can be "
                             "computed from this model")
        primary = next(iter(pe.shown))
        h.heat_panel = primary
        h.heat_empty = not bool(pe.shown[primary].any())
        save_png(image_grid(imgs, ncols=3), assets / f"{h.hit_key}-grid.png")
        h.assets["grid"] = f"assets/{h.hit_key}-grid.png"
        for panel, shown in pe.shown.items():
            role = "heat" if panel == primary else panel
            save_png(_overlay_grid(imgs, shown), assets / f"{h.hit_key}-{role}.png")
            h.assets[role] = f"assets/{h.hit_key}-{role}.png"
        both = torch.cat([pe.removed[primary], pe.kept[primary]])
        save_png(image_grid(both, ncols=len(imgs)), assets / f"{h.hit_key}-contrast.png")
        h.assets["contrast"] = f"assets/{h.hit_key}-contrast.png"
        h.contrast = {p: c.as_dict() for p, c in pe.contrast.items()}
        h.colour, h.detail = pe.colour, pe.detail
        rows = np.flatnonzero(labels == h.cls)
        if len(rows):
            weakest = "lowest" if h.direction == "highest" else "highest"
            least = rows[top_k(np.asarray(values[rows, h.feature]), len(h.examples), weakest)]
            save_png(image_grid(src.images[least], ncols=3), assets / f"{h.hit_key}-least.png")
            h.assets["least"] = f"assets/{h.hit_key}-least.png"
        if pe.evidence:
            h.evidence_panels = pe.evidence
            if src.cue_masks and len(rows):
                h.evidence_images = {
                    "top": {c: round(float(m[h.examples].any((1, 2)).mean()), 4)
                            for c, m in sorted(src.cue_masks.items())},
                    "least": {c: round(float(m[least].any((1, 2)).mean()), 4)
                              for c, m in sorted(src.cue_masks.items())}}
            h.evidence = dict(reader_evidence(None, pe.evidence, h.evidence_images, h.colour,
                                              h.detail))
            h.truth = truth_from_evidence(h.evidence, src.cue_kind)
        if src.without is not None and h.direction == "highest":
            h.decide_by_intervention(feature_removal(src, h.examples, h.feature, h.weight,
                                                     device))
    if src.model is not None and src.fvis_layer is not None and fvis_steps > 0:
        bar = tqdm(total=len(hits), desc="feature visualization", unit="feature",
                   disable=not progress)
        vis = visualize_channels(
            src.model, src.fvis_layer, [h.feature for h in hits], [h.weight for h in hits],
            size=fvis_size, steps=fvis_steps, seed=seed, device=device,
            preprocess=src.preprocess, progress=bar.update)
        bar.close()
        for h, img in zip(hits, vis, strict=True):
            save_png(image_grid(img[None], min_side=192, pad=0), assets / f"{h.hit_key}-fvis.png")
            h.assets["fvis"] = f"assets/{h.hit_key}-fvis.png"


_EXAMPLES_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Highlighted comments</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;margin:8px}}li{{margin:0 0 8px}}
.hl{{border-radius:3px;padding:0 2px}}</style></head>
<body><ol>{items}</ol></body></html>
"""


def _render_text_assets(src: ExampleSource, hits: list[HitSpec], stage: Path,
                        values: np.ndarray, labels: np.ndarray, n_least: int,
                        insertion_words: int, insertion_texts: int,
                        progress: bool) -> dict[int, Markup]:
    """Every text HIT's panels: token attributions (highlighted comments, word clouds), the
    contrast of the highlighted words (removed vs only kept), the words that push the feature
    most when appended to ordinary comments (insertion; :mod:`tasks.viz.text_panels`), the
    class's least-activating comments; with ground truth, each panel's shares and the evidence
    a careful reader takes from them (:func:`tasks.viz.text_panels.text_reader_evidence`).
    Returns the HTML word cloud of each class (its features' words weighted by |weight|)."""
    assets = stage / "assets"
    class_words: dict[int, dict[str, float]] = {}
    kinds_of = (word_kinds(src.tokens, src.token_kinds) if src.token_kinds is not None
                else None)
    control = typical_words(src.tokens) if insertion_words > 0 and insertion_texts > 0 else []
    for h in tqdm(hits, desc="token attributions", unit="feature", disable=not progress):
        toks = [src.tokens[i] for i in h.examples]
        attrs = occlusion_attributions(src.features, toks, h.feature, h.weight)
        scale = max((float(np.clip(a, 0, None).max()) for a in attrs if len(a)), default=0.0)
        h.texts = [highlight_html(t, a, scale or None) for t, a in zip(toks, attrs, strict=True)]
        h.words = word_scores(toks, attrs)
        h.cloud = cloud_html(h.words)
        page = _EXAMPLES_PAGE.format(items="".join(f"<li>{t}</li>" for t in h.texts))
        _write_text(assets / f"{h.hit_key}-examples.html", page)
        cloud_png(h.words, assets / f"{h.hit_key}-cloud.png")
        h.assets["examples"] = f"assets/{h.hit_key}-examples.html"
        h.assets["cloud"] = f"assets/{h.hit_key}-cloud.png"
        col = np.asarray(values[:, h.feature], dtype=np.float64)
        baseline = float(np.median(col))
        h.text_contrast = highlight_contrast(src.features, toks, attrs, h.feature, h.weight,
                                             baseline)
        ranking: list[tuple[str, float]] = []
        departure = 0.0
        typical: list[tuple[str, float]] = []
        if insertion_words > 0 and insertion_texts > 0:
            # each word's effect as a share of the way to the shown comments; none where they
            # do not depart from an ordinary comment the class's way (no panel to show)
            departure = float(np.mean((1.0 if h.weight >= 0 else -1.0)
                                      * (col[h.examples] - baseline)))
        if departure > 0:
            pool = top_k(col, max(3 * len(h.examples), 30), h.direction)
            words = list(dict.fromkeys(
                candidate_words([src.tokens[i] for i in pool], insertion_words)
                + associated_words(src.tokens, col, h.weight, insertion_words)))
            base = [src.texts[i] for i in ordinary_rows(col, insertion_texts)]
            ranking = insertion_ranking(src.features, base, words, h.feature, h.weight)
            typical = insertion_ranking(src.features, base, control, h.feature, h.weight)
            # every word tested (the page shows the first few, then lists the rest)
            h.insertion = [(w, round(e / departure, 4)) for w, e in ranking]
            h.insertion_typical = [(w, round(e / departure, 4)) for w, e in typical]
        h.least_texts = [src.texts[i] for i in least_rows(col, labels, h.cls, n_least,
                                                          h.weight)]
        _write_text(assets / f"{h.hit_key}-panels.html",
                    render_text_panels(h.insertion, h.text_contrast, h.least_texts,
                                       h.insertion_typical))
        h.assets["panels"] = f"assets/{h.hit_key}-panels.html"
        if src.token_kinds is not None and kinds_of is not None:
            kinds = [src.token_kinds[i] for i in h.examples]
            occ = text_evidence(attrs, kinds, src.class_word_kinds)
            h.evidence_panels = {"occlusion": {**occ, **(h.text_contrast or {})}}
            if ranking:  # the panel the page shows, nothing else
                h.evidence_panels["insertion"] = kind_shares(
                    ranking, kinds_of, src.class_word_kinds, typical=typical, scale=departure)
            h.evidence = dict(text_reader_evidence(h.evidence_panels, occ))
            # the truth is what dominates the evidence at the reader's own threshold
            h.truth = truth_from_evidence(h.evidence, {"identity": "identity"},
                                          threshold=DOMINANT_SHARE)
            h.decide_by_intervention(text_feature_removal(src, h.examples, h.feature,
                                                          h.weight, col))
        top = max(h.words.values(), default=0.0)
        if h.gold_candidate:  # the class cloud shows the audited features' words only
            continue
        acc = class_words.setdefault(h.cls, {})
        for w, v in h.words.items():
            acc[w] = acc.get(w, 0.0) + abs(h.weight) * v / top
    clouds = {}
    for c, words in class_words.items():
        name = f"class-c{c:02d}-cloud.png"
        cloud_png(words, assets / name)
        clouds[c] = cloud_html(words, max_words=20)
        for h in hits:
            if h.cls == c:
                h.assets["class_cloud"] = f"assets/{name}"
    return clouds


# --------------------------------------------------------------------------- gold + output


_GOLD_KEY = re.compile(r"^(img|txt)-c(\d{1,4})-f(\d{1,6})-[A-Za-z0-9_]+$")


def _gold_specs(user_gold: Mapping[str, Mapping[str, str]], gold_path: Path,
                audited: list[HitSpec], n_classes: int, d: int,
                entries: list[tuple[str, dict]]) -> list[tuple[str, int, int, float, int, str]]:
    """Researcher-labelled gold items: (hit_key, class, feature, weight, rank, layer) per key
    of the gold file, each a feature outside the audited ones.

    Raises
    ------
    BuildError
        A key names a HIT under audit or an audited feature, is not ``PREFIX-cCC-fFFFF-NAME``,
        or names a class or feature out of range.
    """
    keys = {h.hit_key for h in audited}
    feats = {h.feature for h in audited}
    prefix = audited[0].hit_key.split("-", 1)[0]
    known: dict[tuple[int, int], tuple[dict, str]] = {}
    for lay, e in entries:  # the sparse layer's entry first
        known.setdefault((e["class"], e["feature"]), (e, lay))
    out = []
    for key in user_gold:
        if key in keys:
            raise BuildError(f"{gold_path}: {key} is a HIT under audit; gold items must be "
                             f"features outside the audited ones (e.g. "
                             f"{prefix}-c00-f{d - 1:04d}-extra for feature {d - 1} of class 0)")
        m = _GOLD_KEY.match(key)
        if m is None or m.group(1) != prefix:
            raise BuildError(f"{gold_path}: gold key {key!r} is not {prefix}-cCC-fFFFF-NAME (the "
                             f"class and feature of a known-answer item, e.g. "
                             f"{prefix}-c00-f{d - 1:04d}-extra)")
        c, f = int(m.group(2)), int(m.group(3))
        if not 0 <= c < n_classes or not 0 <= f < d:
            raise BuildError(f"{gold_path}: gold key {key!r}: class {c} or feature {f} out of "
                             f"range ({n_classes} classes, d = {d})")
        if f in feats:
            raise BuildError(f"{gold_path}: gold key {key!r}: feature {f} is under audit; gold "
                             "items must be features outside the audited ones")
        e, lay = known.get((c, f), ({"weight": 1.0, "rank": 0}, "gold"))
        out.append((key, c, f, float(e["weight"]), int(e["rank"]), lay))
    return out


def _gold_candidates(probe: Mapping, probe_path: Path, audited: list[HitSpec],
                     share: float) -> list[tuple[str, dict]]:
    """(layer, top-feature entry) of features outside the audit that may become gold items:
    top features of the probe's layers (sparse first) whose feature index no audited HIT
    shows, of classes that have audited HITs, best ranked first; at most three per gold item
    wanted (``round(share * len(audited))``, at least one)."""
    if share <= 0 or not audited:
        return []
    n_gold = max(1, round(share * len(audited)))
    feats = {h.feature for h in audited}
    classes = {h.cls for h in audited}
    seen: set[int] = set()
    cands = []
    tops = probe.get("top_features") or {}
    for lay in LAYERS:
        if lay not in tops:
            continue
        for e in _top_entries(probe, probe_path, lay, 10**6):
            if e["feature"] in feats or e["feature"] in seen or e["class"] not in classes:
                continue
            seen.add(e["feature"])
            cands.append((lay, e))
    cands.sort(key=lambda le: (le[1]["rank"], LAYERS.index(le[0]), le[1]["class"]))
    return cands[: 3 * n_gold]


def _assign_gold(hits: list[HitSpec], cands: list[HitSpec], share: float, seed: int,
                 user_gold: Mapping[str, Mapping[str, str]] | None,
                 questions: QuestionSchema) -> list[HitSpec]:
    """The gold HITs among ``cands`` (features outside the audit, evidence rendered): those of
    the gold file with its answers, else ``round(share * len(hits))`` (at least one) chosen
    from the candidates whose answer is clear from the built-in ground truth. Audited HITs are
    never gold."""
    if user_gold is not None:
        for h in cands:
            h.is_gold, h.gold = True, dict(user_gold[h.hit_key])
        return cands
    if share <= 0 or not hits:
        return []
    clear = [h for h in cands if h.truth is not None and h.truth != "none"
             and dominant_share(h.evidence)[1] >= GOLD_MIN_SHARE
             and (h.truth_maps is None or h.truth_maps == h.truth)  # clear both ways
             and questions.gold_for_truth(h.truth, h.kind) is not None]
    if not clear:
        logger.warning("no feature outside the audit has a clear ground truth: no gold HITs "
                       "(give researcher-labelled ones with a gold file)")
        return []
    n_gold = min(len(clear), max(1, round(share * len(hits))))
    rng = np.random.default_rng(seed)
    chosen = [clear[i] for i in sorted(rng.choice(len(clear), size=n_gold, replace=False))]
    for h in chosen:
        h.is_gold, h.gold = True, questions.gold_for_truth(h.truth, h.kind)
    return chosen


def _write_text(path: Path, text: str) -> None:
    write_text(path, text)


def _page_asset_urls(h: HitSpec) -> dict[str, str]:
    return {k: ASSET_PREFIX + Path(v).name for k, v in h.assets.items()}


def _batch_rows(hits: list[HitSpec], asset_base_url: str) -> tuple[list[str], list[list[str]]]:
    kind = hits[0].kind
    files = (["class_examples", "grid", "heat", "activation", "contrast", "least", "fvis"]
             if kind == "image"
             else ["class_cloud", "examples", "cloud", "panels"])
    header = ["hit_key", "class_name", "feature", "direction", "direction_note", "fvis_verb",
              "attention_number", "asset_base_url", *[f"{f}_file" for f in files]]
    if kind == "image":
        header += ["heat_caption", "contrast_note"]
    rows = []
    for h in hits:
        note = ("the model counts the absence of this feature as evidence for the class"
                if h.direction == "lowest" else "the model counts this feature as evidence for "
                "the class")
        rows.append([h.hit_key, html.escape(h.class_name), str(h.feature), h.direction, note,
                     "maximizes" if h.direction == "highest" else "minimizes", h.attention,
                     asset_base_url,
                     *[Path(h.assets[f]).name if f in h.assets else "" for f in files]])
        if kind == "image":
            title, text = PANEL_TEXT.get(h.heat_panel, ("Where the feature fires", ""))
            notes = [f"{PANEL_TEXT.get(p, (p,))[0]}: {round(100 * c['removed'])}% of the "
                     f"feature left with its region removed, {round(100 * c['kept'])}% with only "
                     "it kept" for p, c in h.contrast.items()]
            if h.colour is not None:
                notes.append(COLOUR_NOTE.format(pct=round(100 * h.colour)))
            if h.detail is not None:
                notes.append(DETAIL_NOTE.format(pct=round(100 * h.detail)))
            rows[-1] += [html.escape(f"{title}: {text}"), html.escape("; ".join(notes))]
    return header, rows


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _commit(stage: Path, out: Path) -> None:
    """Move the staged files into ``out`` (each with an atomic rename), manifest last; remove
    pages and assets of earlier builds that this build does not produce."""
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("assets", "hits"):
        (out / sub).mkdir(exist_ok=True)
        new = {p.name for p in (stage / sub).iterdir()}
        for p in (stage / sub).iterdir():
            os.replace(p, out / sub / p.name)
        for p in (out / sub).iterdir():
            if p.is_file() and p.name not in new:
                p.unlink()
    for name in ("template.html", "batch.csv", SCHEMA_FILE, RUN_RECORD, "manifest.jsonl"):
        os.replace(stage / name, out / name)


def _checked_features_fp(probe: Mapping, probe_path: Path, meta: Mapping,
                         features_dir: Path) -> str | None:
    """The features' fingerprint, refusing features that are not the ones the probe was fit on.

    Probes and features written before fingerprints existed carry none and pass unchecked.
    """
    expected = probe_features_fingerprint(dict(probe))
    actual = meta.get("fingerprint")
    if expected is not None and actual is None:
        actual = features_fingerprint(features_dir, meta)
    try:
        check_same_run(expected, actual, expected_from=str(probe_path),
                       actual_from=str(features_dir))
    except RunMismatchError as exc:
        raise BuildError(str(exc)) from None
    return actual


# --------------------------------------------------------------------------- entry point


def build_tasks(
    probe_dir: str | os.PathLike,
    features_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    k_features: int = 5,
    n_examples: int = 9,
    split: str = "val",
    layer: str = "sparse",
    gold_share: float = 0.1,
    gold_file: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    reward: str = "0.10",
    assignments: int = DEFAULT_ASSIGNMENTS,
    asset_base_url: str = DEFAULT_ASSET_BASE_URL,
    fvis_steps: int = 128,
    fvis_size: int = 64,
    n_class_examples: int = 6,
    heat_floor: float = 0.5,
    panels: tuple[str, ...] | list[str] = HIT_PANELS,
    lime_samples: int = 96,
    insertion_words: int = 100,
    insertion_texts: int = 16,
    source: ExampleSource | None = None,
    progress: bool = True,
    questions: QuestionSchema | None = None,
) -> BuildResult:
    """Render one HIT per (class, top feature) of the probe.

    Parameters
    ----------
    probe_dir : path
        ``RUN/probe`` with ``probe.json``.
    features_dir : path or None
        ``RUN/features``; None uses ``probe.json``'s ``features_dir``.
    out_dir : path
        ``RUN/tasks``; created or updated in place (earlier pages/assets removed).
    k_features : int
        Top features per class (by rank, i.e. by |weight|).
    n_examples : int
        Top-activating examples per HIT (5-9): highest values for a positive weight, lowest for
        a negative one.
    split : str
        Held-out split whose examples are shown.
    layer : {"sparse", "dense", "both"}
        Which decision layer's top features get HITs.
    gold_share : float
        Gold (known-answer) HITs to add, as a share of the audited HITs (at least one when
        above 0). They show features *outside* the audit, never an audited feature: the
        probe's next-ranked top features (sparse, then dense) whose feature no audited HIT
        shows, made gold where the built-in ground truth gives a clear answer (datasets
        without masks get none; use a gold file).
    gold_file : path, optional
        JSON ``{hit_key: {"shared", "pattern"}}`` (or a list of such objects with ``hit_key``):
        researcher-labelled gold items, each key ``PREFIX-cCC-fFFFF-NAME`` naming a class and a
        feature outside the audit (e.g. ``img-c00-f0123-extra``; workers see the key, so it
        should not say "gold"); an audited HIT or feature is refused. When given, exactly
        these are the gold HITs and ``gold_share`` is ignored.
    device : str or torch.device, optional
        Where models run (``"cuda"`` for GPU); CPU by default.
    seed : int
        Fixes attention-check numbers, gold choice and feature visualizations.
    reward : str
        Dollars per assignment, e.g. ``"0.10"`` (for the cost preview and batch).
    assignments : int
        Assignments per HIT: written into every manifest line (``"assignments"``), which
        ``tasks publish`` uses, and priced in the cost preview.
    asset_base_url : str
        Initial value of batch.csv's ``asset_base_url`` column (where assets are uploaded).
    fvis_steps, fvis_size : int
        Optimization steps and side of feature visualizations (0 steps: none).
    n_class_examples : int
        Typical examples of the class shown on each HIT (a grid of images; at most 3
        comments for text).
    heat_floor : float
        Heatmaps show (and evidence measures) only the part above this fraction of each
        map's peak (see :func:`tasks.viz.heatmap.normalize_maps`).
    panels : sequence of str
        The map panels of image HITs, from :data:`tasks.viz.panels.MAP_PANELS`; the first
        one the model allows is the ``heat`` asset (default LIME superpixels, then the
        feature's own activation map). ``benchmarks/measure_evidence.py`` measured which
        panel shows which kind of cue.
    lime_samples : int
        Perturbed copies per image of the LIME panel (0: no LIME panel).
    insertion_words, insertion_texts : int
        Text HITs' insertion panel: at most this many distinct words of the feature's top
        comments, and as many words whose comments have the feature furthest the class's way
        over the split (:func:`tasks.viz.text_panels.associated_words`), are each appended to
        this many ordinary comments of the split (those where the feature is nearest its
        median), and the words that push the feature most the way the class uses it are
        shown first, then every other word tested, beside what words picked at random do
        (:data:`tasks.viz.text_panels.TYPICAL_WORDS` words drawn from the split's vocabulary,
        :func:`tasks.viz.text_panels.typical_words`) (0: no insertion panel). Each text HIT
        costs up to ``(2 * insertion_words + TYPICAL_WORDS) * insertion_texts`` extra forward
        passes of the encoder (5,248 by default: a second on the built-in bag-of-embeddings
        model, longer on a large transformer on CPU).
        ``benchmarks/measure_text_evidence.py`` measured which text panel shows identity terms.
    source : ExampleSource, optional
        Examples and model; loaded from ``features_dir/meta.json`` when None.
    progress : bool
        Show tqdm progress bars.
    questions : QuestionSchema, optional
        The questions the HITs ask (:func:`sparse_probe.questions.load_schema` reads a
        study's own); the built-in schema by default. Written to ``questions.json``.

    Returns
    -------
    BuildResult

    Raises
    ------
    BuildError
        On malformed inputs, or a HIT whose question XML would exceed MTurk's 64 KB.
    """
    if layer not in (*LAYERS, "both"):
        raise BuildError(f"layer must be sparse, dense or both, got {layer!r}")
    if not 5 <= n_examples <= 9:
        raise BuildError(f"examples per HIT must be between 5 and 9, got {n_examples}")
    if k_features < 1:
        raise BuildError(f"features per class must be >= 1, got {k_features}")
    if not 0 <= gold_share <= 1:
        raise BuildError(f"gold share must be in [0, 1], got {gold_share}")
    for name, value in (("insertion_words", insertion_words),
                        ("insertion_texts", insertion_texts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BuildError(f"{name} must be an integer >= 0, got {value!r}")
    if isinstance(lime_samples, bool) or not isinstance(lime_samples, int) or lime_samples < 0:
        raise BuildError(f"lime_samples must be an integer >= 0, got {lime_samples!r}")
    unknown = [p for p in panels if p not in MAP_PANELS]
    if unknown or not panels:
        raise BuildError(f"panels: unknown {unknown or 'none given'}; expected some of "
                         f"{', '.join(MAP_PANELS)}")
    try:
        estimate_cost(0, assignments, reward)
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    probe_dir, out_dir = Path(probe_dir), Path(out_dir)
    probe_path = probe_dir / "probe.json"
    probe = _read_json(probe_path, "written by sparse-probe fit")
    if features_dir is None:
        if not probe.get("features_dir"):
            raise BuildError(f"{probe_path}: field features_dir missing; pass --features")
        # recorded absolute; a moved run's is found again relative to the probe
        features_dir = Path(recorded_path({**probe, "_dir": str(probe_dir.resolve())}, None,
                                          "features_dir"))
        features_dir = (probe_dir / features_dir).resolve()
    features_dir = Path(features_dir)
    meta = _read_json(features_dir / "meta.json", "written by sparse-probe extract")
    meta["_dir"] = str(features_dir.resolve())  # finds the model and data of a moved run
    features_fp = _checked_features_fp(probe, probe_path, meta, features_dir)
    kind = meta.get("kind")
    if kind not in ("image", "text"):
        raise BuildError(f"{features_dir / 'meta.json'}: kind {kind!r} has no visual evidence; "
                         "HITs need kind 'image' or 'text'")
    x_path = features_dir / f"{split}.npy"
    try:
        X = np.load(x_path, mmap_mode="r")
        labels = np.load(features_dir / f"{split}_labels.npy")
    except FileNotFoundError as exc:
        raise BuildError(f"{exc.filename}: not found (split {split!r})") from None
    ids = _read_json(features_dir / f"{split}_ids.json", f"ids of split {split!r}")
    if X.ndim != 2 or len(ids) != X.shape[0] or len(labels) != X.shape[0]:
        raise BuildError(f"{x_path}: shape {X.shape} does not match {len(ids)} ids and "
                         f"{len(labels)} labels")
    questions = questions or default_schema()
    user_gold = _load_gold_file(Path(gold_file), questions) if gold_file is not None else None

    dev = torch.device(device) if device is not None else torch.device("cpu")
    layers = LAYERS if layer == "both" else (layer,)
    prefix = "img" if kind == "image" else "txt"
    class_names = list(meta.get("classes") or [])

    def make_hit(key: str, lay: str, e: Mapping[str, Any]) -> HitSpec:
        if not 0 <= e["feature"] < X.shape[1]:
            raise BuildError(f"{probe_path}: feature {e['feature']} out of range "
                             f"(d = {X.shape[1]})")
        direction = direction_for(e["weight"])
        idx = top_k(np.asarray(X[:, e["feature"]]), n_examples, direction)
        return HitSpec(
            hit_key=key, kind=kind, layer=lay, cls=e["class"], class_name=e["class_name"],
            feature=e["feature"], weight=e["weight"], rank=e["rank"], direction=direction,
            examples=idx, example_ids=[str(ids[i]) for i in idx],
            attention=str(int(_hit_rng(seed, key).integers(1, 10))))

    hits: list[HitSpec] = []
    for lay in layers:
        for e in _top_entries(probe, probe_path, lay, k_features):
            hits.append(make_hit(f"{prefix}-c{e['class']:02d}-f{e['feature']:04d}-{lay}", lay, e))
    if not hits:
        raise BuildError(f"{probe_path}: no non-zero top features for layer {layer!r}")
    # gold items: features outside the audit (never a feature whose verdict is being decided)
    names = {h.cls: h.class_name for h in hits}
    if user_gold is not None:
        entries = [(lay, e) for lay in LAYERS if lay in (probe.get("top_features") or {})
                   for e in _top_entries(probe, probe_path, lay, 10**6)]
        n_classes = max(len(class_names), max(names) + 1)
        cands = [make_hit(key, lay, {"class": c, "class_name": names.get(c) or (
                    class_names[c] if c < len(class_names) else str(c)), "feature": f,
                    "weight": w, "rank": r})
                 for key, c, f, w, r, lay in _gold_specs(user_gold, Path(gold_file or ""),
                                                         hits, n_classes, X.shape[1], entries)]
    else:
        cands = [make_hit(f"{prefix}-c{e['class']:02d}-f{e['feature']:04d}-{lay}", lay, e)
                 for lay, e in _gold_candidates(probe, probe_path, hits, gold_share)]
    for h in cands:
        h.gold_candidate = True

    if source is None:
        try:
            source = load_source(meta, split, dev)
        except (ValueError, KeyError, FileNotFoundError) as exc:
            raise BuildError(f"{features_dir}: cannot load the model and examples: {exc}"
                             ) from None
    src = source
    if src.kind != kind:
        raise BuildError(f"example source is {src.kind!r} but meta.json says {kind!r}")
    if len(src) != X.shape[0]:
        raise BuildError(f"split {split!r}: {len(src)} examples but {X.shape[0]} feature rows")
    if src.labels is not None and not np.array_equal(np.asarray(src.labels), labels):
        raise BuildError(f"{features_dir}: {split}_labels.npy differs from the labels of the "
                         "examples loaded now; the data changed since extraction (re-run "
                         "sparse-probe extract)")
    if src.model is not None:
        src.model.to(dev).eval()

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.build-", dir=out_dir.parent))
    try:
        (stage / "assets").mkdir()
        (stage / "hits").mkdir()
        torch.manual_seed(seed)
        class_clouds: dict[int, Markup] = {}
        class_texts: dict[int, list[str]] = {}
        if kind == "image":
            _render_image_assets(src, hits + cands, stage, dev, seed, fvis_steps, fvis_size,
                                 n_class_examples, labels, X, heat_floor, tuple(panels),
                                 lime_samples, progress)
        else:
            class_clouds = _render_text_assets(src, hits + cands, stage, X, labels,
                                               n_examples,
                                               insertion_words, insertion_texts, progress)
            for c in {h.cls for h in hits + cands}:
                idx = np.flatnonzero(labels == c)[: min(3, n_class_examples)]
                class_texts[c] = [src.texts[i] for i in idx]
        gold = _assign_gold(hits, cands, gold_share, seed, user_gold, questions)
        for h in cands:  # candidates not chosen leave no trace
            if not h.is_gold:
                for rel in set(h.assets.values()) - {a for g in hits + gold
                                                     for a in g.assets.values()}:
                    (stage / rel).unlink(missing_ok=True)
        hits = hits + gold
        for h in hits:
            page = render_hit(
                kind=kind, hit_key=h.hit_key, class_name=h.class_name, direction=h.direction,
                attention_number=h.attention, assets=_page_asset_urls(h),
                n_examples=len(h.examples), texts=h.texts, cloud=h.cloud,
                class_cloud=class_clouds.get(h.cls, Markup("")),
                class_texts=class_texts.get(h.cls, []), heat_empty=h.heat_empty,
                heat_panel=h.heat_panel, contrast=h.contrast, colour=h.colour, detail=h.detail,
                insertion=h.insertion, insertion_typical=h.insertion_typical,
                text_contrast=h.text_contrast, least_texts=h.least_texts, schema=questions)
            try:
                html_question(retarget_assets(page, LONG_BASE_URL), what=h.hit_key)
            except (QuestionTooLargeError, ValueError) as exc:
                raise BuildError(f"HIT {h.hit_key}: {exc}") from None
            _write_text(stage / "hits" / f"{h.hit_key}.html", page)
        _write_text(stage / "template.html", render_mturk_template(kind, questions))
        _write_text(stage / SCHEMA_FILE,
                    json.dumps(questions.to_dict(), indent=2, ensure_ascii=False) + "\n")
        _write_text(stage / "batch.csv", _csv_text(*_batch_rows(hits, asset_base_url)))
        manifest = [{**h.record(), "assignments": int(assignments),
                     "reward": f"{parse_reward(reward):.2f}"} for h in hits]
        att_field = questions.field_for(ATTENTION)
        for r in manifest:  # the attention check is the schema's (none without one)
            r["attention"] = {**r["attention"], "field": att_field} if att_field else None
        manifest_text = "".join(json.dumps(r, sort_keys=False) + "\n" for r in manifest)
        _write_text(stage / "manifest.jsonl", manifest_text)
        write_run_record(stage, fingerprint=fingerprint_of({
            "manifest": manifest_text.encode(), "questions": questions.to_dict()}),
            inputs={"features": features_fp, "probe": probe_fingerprint(probe)})
        _commit(stage, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    cost = estimate_cost(len(hits), assignments, reward)
    logger.info("built %d HITs (%d gold) in %s", len(hits), sum(h.is_gold for h in hits),
                out_dir)
    return BuildResult(out_dir, manifest, cost)
