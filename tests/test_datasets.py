"""Built-in datasets: determinism, ground-truth masks, planted cue rates, identity-term bias."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sparse_probe.datasets import (
    IDENTITY_TERMS,
    MARK_COLOR,
    load_lexicon,
    make_shapes,
    make_toxicity,
    token_kind,
    tokenize,
)

SMALL = {"n_train": 48, "n_val": 12, "n_test": 36, "size": 32}


def _binom_ok(k: int, n: int, p: float, z: float = 4.5) -> bool:
    """Is k successes out of n consistent with rate p (normal approx., z standard errors)?"""
    sd = np.sqrt(n * p * (1 - p)) + 1e-9
    return abs(k - n * p) <= z * sd + 1


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(n_train=240, n_val=60, n_test=240, size=48, seed=3)


def test_shapes_deterministic_per_seed():
    a, b, c = make_shapes(seed=1, **SMALL), make_shapes(seed=1, **SMALL), make_shapes(
        seed=2, **SMALL)
    for split in ("train", "val", "test"):
        sa, sb = a.split(split), b.split(split)
        assert np.array_equal(sa.images, sb.images)
        assert np.array_equal(sa.labels, sb.labels)
        assert np.array_equal(sa.object_masks, sb.object_masks)
        for cue in sa.cue_masks:
            assert np.array_equal(sa.cue_masks[cue], sb.cue_masks[cue])
        assert sa.ids == sb.ids
    assert not np.array_equal(a.train.images, c.train.images)


def test_shapes_split_sizes_do_not_change_other_splits():
    a = make_shapes(seed=5, n_train=20, n_val=5, n_test=10, size=32)
    b = make_shapes(seed=5, n_train=20, n_val=5, n_test=30, size=32)
    assert np.array_equal(a.train.images, b.train.images)
    assert len(b.test) == 30


@pytest.mark.slow
def test_shapes_fields_and_types(shapes):
    s = shapes.split("test")
    n = len(s)
    assert s.images.shape == (n, 48, 48, 3) and s.images.dtype == np.uint8
    assert s.labels.dtype == np.int64 and s.labels.min() >= 0
    assert s.labels.max() < len(shapes.class_names) and len(shapes.class_names) >= 6
    assert s.object_masks.shape == (n, 48, 48) and s.object_masks.dtype == bool
    assert s.ids[0] == "test/000000" and len(set(s.ids)) == n
    assert set(shapes.cue_kind.values()) == {"mark", "background"}
    assert len(set(shapes.cue_class.values())) == len(shapes.cue_class)
    for cue in ("watermark", "texture"):
        assert s.cue_masks[cue].shape == (n, 48, 48)
        # no mask where the cue is absent, a non-empty mask where present
        assert not s.cue_masks[cue][~s.has_cue[cue]].any()
        assert s.cue_masks[cue][s.has_cue[cue]].reshape(s.has_cue[cue].sum(), -1).any(1).all()
    with pytest.raises(KeyError, match="unknown split"):
        shapes.split("dev")


@pytest.mark.slow
def test_watermark_mask_matches_pixels(shapes):
    for s in shapes.splits.values():
        is_mark_color = (s.images == np.array(MARK_COLOR, np.uint8)).all(-1)
        mask = s.cue_masks["watermark"]
        # every masked pixel has the mark colour, and nothing else in the image has it
        assert np.array_equal(is_mark_color, mask)
        # the mark is a solid square
        for i in np.flatnonzero(s.has_cue["watermark"])[:20]:
            ys, xs = np.nonzero(mask[i])
            h, w = np.ptp(ys) + 1, np.ptp(xs) + 1
            assert h == w and len(ys) == h * w
        assert not (mask & s.object_masks).any()


def test_object_mask_pixels_differ_from_background(shapes):
    s = shapes.train
    lum = s.images.astype(float).mean(-1)
    for i in range(len(s)):
        obj = s.object_masks[i]
        bg = ~obj & ~s.cue_masks["watermark"][i]
        assert obj.sum() > 20
        assert lum[i][bg].mean() - lum[i][obj].mean() > 40


def test_texture_cue_is_high_frequency_background(shapes):
    s = shapes.train
    img = s.images.astype(float).mean(-1)
    # mean |horizontal gradient| over background pixels (both neighbours background)
    bg = ~s.object_masks & ~s.cue_masks["watermark"]
    pair = bg[:, :, 1:] & bg[:, :, :-1]
    grad = np.abs(np.diff(img, axis=2))
    energy = (grad * pair).sum((1, 2)) / pair.sum((1, 2))
    tex = s.has_cue["texture"]
    assert tex.any() and (~tex).any()
    assert energy[tex].min() > energy[~tex].max()
    # the texture mask is exactly the background of textured images
    assert np.array_equal(s.cue_masks["texture"][tex], bg[tex])


@pytest.mark.slow
def test_cue_rates_as_configured():
    ds = make_shapes(n_train=3000, n_val=0, n_test=3000, size=24, seed=11,
                     cue_strength=0.8, cue_leak=0.1, test_cue_rate=0.3)
    tr, te = ds.train, ds.test
    for cue, k in ds.cue_class.items():
        inside = tr.labels == k
        assert _binom_ok(tr.has_cue[cue][inside].sum(), inside.sum(), 0.8)
        assert _binom_ok(tr.has_cue[cue][~inside].sum(), (~inside).sum(), 0.1)
        assert _binom_ok(te.has_cue[cue].sum(), len(te), 0.3)
        # test split: cue independent of class (chi-square test of independence)
        table = np.array([[np.sum((te.labels == c) & te.has_cue[cue]),
                           np.sum((te.labels == c) & ~te.has_cue[cue])]
                          for c in range(len(ds.class_names))])
        assert stats.chi2_contingency(table).pvalue > 1e-3
        # train split: strongly dependent
        table_tr = np.array([[np.sum((tr.labels == c) & tr.has_cue[cue]),
                              np.sum((tr.labels == c) & ~tr.has_cue[cue])]
                             for c in range(len(ds.class_names))])
        assert stats.chi2_contingency(table_tr).pvalue < 1e-10
    assert np.ptp(np.bincount(tr.labels)) <= 1


def test_shapes_bad_parameters():
    with pytest.raises(ValueError, match="cue_strength"):
        make_shapes(cue_strength=1.5, **SMALL)
    with pytest.raises(ValueError, match="size"):
        make_shapes(n_train=2, n_val=1, n_test=1, size=8)


# --------------------------------------------------------------------------------- toxicity


def test_toxicity_deterministic_per_seed():
    a = make_toxicity(n_train=200, n_val=50, n_test=100, seed=4)
    b = make_toxicity(n_train=200, n_val=50, n_test=100, seed=4)
    c = make_toxicity(n_train=200, n_val=50, n_test=100, seed=5)
    assert a.train.texts == b.train.texts and np.array_equal(a.train.labels, b.train.labels)
    assert a.test.identity_group == b.test.identity_group
    assert a.train.texts != c.train.texts


@pytest.mark.slow
def test_toxicity_bias_rates():
    ds = make_toxicity(n_train=4000, n_val=0, n_test=4000, seed=2, bias=0.85)
    tr, te = ds.train, ds.test
    tox = tr.labels == 1
    assert _binom_ok(tr.has_identity[tox].sum(), tox.sum(), 0.85)
    assert _binom_ok(tr.has_identity[~tox].sum(), (~tox).sum(), 0.15)
    assert _binom_ok(te.has_identity.sum(), len(te), 0.5)
    table = np.array([[np.sum((te.labels == y) & te.has_identity),
                       np.sum((te.labels == y) & ~te.has_identity)] for y in (0, 1)])
    assert stats.chi2_contingency(table).pvalue > 1e-3
    assert np.ptp(np.bincount(tr.labels)) <= 1
    assert ds.class_names == ["non-toxic", "toxic"]


def test_toxicity_token_truth_matches_text():
    ds = make_toxicity(n_train=300, n_val=10, n_test=300, seed=0)
    s = ds.test
    all_identity = {t: g for g, ts in IDENTITY_TERMS.items() for t in ts}
    insults, compliments = set(load_lexicon("insults")), set(load_lexicon("compliments"))
    for text, toks, kinds, has_id, group, label, fam in zip(
            s.texts, s.tokens, s.token_kinds, s.has_identity, s.identity_group, s.labels,
            s.template_kind, strict=True):
        assert toks == tokenize(text)
        assert len(kinds) == len(toks)
        id_toks = [t for t in toks if t in all_identity]
        assert bool(id_toks) == bool(has_id)
        if has_id:
            assert len(id_toks) == 1 and all_identity[id_toks[0]] == group
            assert f"identity:{group}" in kinds
        else:
            assert group is None and not any(k.startswith("identity:") for k in kinds)
        has_insult = any(t in insults for t in toks)
        has_compliment = any(t in compliments for t in toks)
        if fam == "toxic":
            assert label == 1 and has_insult
        elif fam == "non_toxic":
            assert label == 0 and has_compliment
        else:
            assert not has_insult and not has_compliment


def test_lexicons_disjoint_and_kinds():
    lists = {k: set(load_lexicon(k)) for k in ("names", "objects", "insults", "compliments")}
    for g, terms in IDENTITY_TERMS.items():
        lists[f"identity_{g}"] = set(terms)
    names = list(lists)
    for i, a in enumerate(names):
        assert lists[a], a
        for b in names[i + 1:]:
            assert not lists[a] & lists[b], (a, b)
    assert set(IDENTITY_TERMS) == {"religion", "ethnicity", "nationality", "sexual_orientation"}
    assert token_kind("muslim") == "identity:religion"
    assert token_kind("idiot") == "insult" and token_kind("the") == "other"
    assert tokenize("Shut up, Alice's bike!") == ["shut", "up", "alice's", "bike"]
    with pytest.raises(FileNotFoundError, match="no lexicon"):
        load_lexicon("nope")
