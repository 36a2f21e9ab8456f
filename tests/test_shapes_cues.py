"""Planted cues as an API: kind, class and strength of each cue of the shapes dataset; the
defaults give the same data as before; the configuration travels in meta.json."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from sparse_probe.datasets import (
    CUE_KINDS,
    MARK_COLOR,
    STRIPE_COLOR,
    CueError,
    load_builtin,
    make_shapes,
    parse_cue,
)

SMALL = {"n_train": 240, "n_val": 60, "n_test": 240, "size": 48, "seed": 3}


def _digest(ds) -> str:
    m = hashlib.sha256()
    for s in ("train", "val", "test"):
        sp = ds.split(s)
        for a in (sp.images, sp.labels, sp.object_masks,
                  *[sp.cue_masks[c] for c in sorted(sp.cue_masks)],
                  *[sp.has_cue[c] for c in sorted(sp.has_cue)]):
            m.update(a.tobytes())
    m.update(repr(sorted(ds.describe().items(), key=str)).encode())
    return m.hexdigest()[:16]


def test_defaults_give_the_data_of_before():
    # digests recorded with the generator before cues became configurable
    assert _digest(make_shapes(n_train=700, n_val=100, n_test=600, size=48, seed=3)) \
        == "c5d4f715885f3b52"
    assert _digest(make_shapes(n_train=50, n_val=20, n_test=20, size=64, seed=1,
                               cue_strength=0.7)) == "29d5627d995c0013"
    default = make_shapes(**SMALL)
    assert "cues" not in default.params  # meta.json of default runs is unchanged too
    explicit = make_shapes(**SMALL, cues={"watermark": "triangle", "texture": "ring"})
    assert explicit.params["cues"] == {"watermark": {"class": "triangle", "strength": 0.9},
                                       "texture": {"class": "ring", "strength": 0.9}}
    for s in ("train", "test"):
        assert np.array_equal(default.split(s).images, explicit.split(s).images)


@pytest.fixture(scope="module")
def new_cues():
    return make_shapes(**SMALL, cues={"stripe": "circle", "tint": {"class": "star",
                                                                  "strength": 0.6}})


def test_new_cues_have_kinds_classes_and_masks(new_cues):
    ds = new_cues
    assert ds.cue_kind == {"stripe": "mark", "tint": "background"}
    assert ds.cue_class == {"stripe": ds.class_names.index("circle"),
                            "tint": ds.class_names.index("star")}
    for s in ("train", "test"):
        sp = ds.split(s)
        assert set(sp.cue_masks) == set(sp.has_cue) == {"stripe", "tint"}
        for cue in ("stripe", "tint"):
            m, h = sp.cue_masks[cue], sp.has_cue[cue]
            assert not m[~h].any()
            assert m[h].reshape(h.sum(), -1).any(1).all()
            assert not (m & sp.object_masks).any()
        # the stripe: a full-length bar of STRIPE_COLOR along one edge
        size = sp.images.shape[1]
        for i in np.flatnonzero(sp.has_cue["stripe"])[:20]:
            m = sp.cue_masks["stripe"][i]
            assert (sp.images[i][m] == STRIPE_COLOR).all()
            rows, cols = m.any(1), m.any(0)
            assert rows.all() or cols.all()  # spans the image along its edge
            assert m[0].all() or m[-1].all() or m[:, 0].all() or m[:, -1].all()
            assert m.sum() <= size * max(3, round(size * 0.08))
        # no watermark pixels when the watermark is not planted
        assert not (sp.images == np.array(MARK_COLOR, np.uint8)).all(-1).any()
        # the tint: tinted backgrounds are greener than untinted ones
        bg = ~sp.object_masks & ~sp.cue_masks["stripe"]
        img = sp.images.astype(float)
        green = np.array([(img[i][bg[i], 1] - img[i][bg[i]][:, [0, 2]].mean(1)).mean()
                          for i in range(len(img))])
        t = sp.has_cue["tint"]
        assert green[t].mean() > green[~t].mean() + 70
        assert green[t].min() > np.percentile(green[~t], 90)
        assert np.array_equal(sp.cue_masks["tint"][t], bg[t])


def test_strength_per_cue(new_cues):
    tr = new_cues.train
    for cue, p in (("stripe", 0.9), ("tint", 0.6)):
        inside = tr.labels == new_cues.cue_class[cue]
        rate = tr.has_cue[cue][inside].mean()
        assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / inside.sum()) + 0.02, (cue, rate)
        assert tr.has_cue[cue][~inside].mean() < 0.15  # cue_leak 0.05


def test_meta_description_rebuilds_the_same_data(new_cues):
    meta = {"dataset": new_cues.describe()}
    assert meta["dataset"]["params"]["cues"]["tint"] == {"class": "star", "strength": 0.6}
    again = load_builtin(meta)
    assert again is not new_cues
    for s in ("train", "val", "test"):
        assert np.array_equal(again.split(s).images, new_cues.split(s).images)
        for cue in ("stripe", "tint"):
            assert np.array_equal(again.split(s).cue_masks[cue], new_cues.split(s).cue_masks[cue])


def test_watermark_moves_to_another_class():
    ds = make_shapes(**SMALL, cues={"watermark": "square"})
    assert ds.cue_class == {"watermark": ds.class_names.index("square")}
    tr = ds.train
    sq = tr.labels == ds.class_names.index("square")
    assert tr.has_cue["watermark"][sq].mean() > 0.75 > tr.has_cue["watermark"][~sq].mean()


@pytest.mark.parametrize(("cues", "message"), [
    ({"glitter": "circle"}, r"unknown cue 'glitter'; expected one of watermark, texture, "
                            r"stripe, tint"),
    ({"stripe": "hexagon"}, r"cue 'stripe': unknown class 'hexagon'; expected one of circle"),
    ({"tint": {"class": "ring", "strength": 1.5}}, r"cue 'tint': strength must be in \[0, 1\], "
                                                  r"got 1.5"),
    ({"tint": {"class": "ring", "strength": -0.1}}, r"strength must be in \[0, 1\]"),
    ({}, r"no cue to plant"),
])
def test_bad_cues_are_refused(cues, message):
    with pytest.raises(CueError, match=message):
        make_shapes(**SMALL, cues=cues)


def test_parse_cue():
    assert parse_cue("stripe=circle") == ("stripe", {"class": "circle", "strength": None})
    assert parse_cue(" tint = star:0.8") == ("tint", {"class": "star", "strength": 0.8})
    for text, message in (("stripe", "expected NAME=CLASS"), ("x=circle", "unknown cue 'x'"),
                          ("tint=star:lots", "strength 'lots' is not a number"),
                          ("tint=star:2", r"strength must be in \[0, 1\], got 2.0")):
        with pytest.raises(CueError, match=message):
            parse_cue(text)
    assert set(CUE_KINDS) == {"watermark", "texture", "stripe", "tint"}
