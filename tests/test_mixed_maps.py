"""A feature of the object *and* a cue: every map puts half of its mass on the same cue.

Small models often have such mixed features (on the built-in shapes, a ring channel whose LIME
and activation maps both give about 0.55 to the striped background and 0.45 to the ring). One
map alone leaves it open (:func:`tasks.viz.evidence.dominant_region` wants a clear margin);
two independent maps that agree settle it for the reader and so for the simulated crowd.
"""

from __future__ import annotations

import random

from helpers_publish import ATTENTION, hit_html

from tasks.simulate import WorkerProfile, choose_answers, parse_hit_form
from tasks.viz.evidence import (
    AGREEING_SHARE,
    agreeing_cue,
    reader_evidence,
    truth_from_evidence,
)


def _map(obj, cues, rest=0.0):
    return {"object": obj, "cues": cues, "background": rest, "removed": 0.5, "kept": 0.6,
            "area": 0.3}


MIXED = {"lime": _map(0.46, {"texture": 0.54, "watermark": 0.0}),
         "activation": _map(0.45, {"texture": 0.55, "watermark": 0.0})}


def test_maps_that_agree_on_a_cue_decide_and_others_do_not():
    assert agreeing_cue(MIXED) == "texture"
    seen = reader_evidence(None, MIXED, {"top": {"texture": 1.0, "watermark": 0.0},
                                         "least": {"texture": 0.67, "watermark": 0.0}})
    assert seen == {"object": 0.0, "cues": {"texture": 1.0, "watermark": 0.0},
                    "background": 0.0}
    assert truth_from_evidence(seen, {"texture": "background"}) == "spurious:background"
    # one map alone, maps that disagree, a cue below half in one map, the object or the
    # unassigned rest on top: still open
    assert agreeing_cue({"lime": MIXED["lime"]}) is None
    assert agreeing_cue({**MIXED, "activation": _map(0.3, {"texture": 0.0,
                                                           "watermark": 0.7})}) is None
    below = _map(0.5, {"texture": AGREEING_SHARE - 0.05, "watermark": 0.0}, 0.05)
    assert agreeing_cue({**MIXED, "activation": below}) is None
    assert agreeing_cue({"a": _map(0.55, {"texture": 0.45}), "b": _map(0.6, {"texture": 0.4})
                         }) is None
    assert agreeing_cue({"a": _map(0.3, {"texture": 0.1}, 0.6),
                         "b": _map(0.2, {"texture": 0.1}, 0.7)}) is None
    assert agreeing_cue(None) is None
    # an empty map (a feature that never fires on its images) agrees on nothing
    assert agreeing_cue({"a": _map(0.0, {"texture": 0.0}), "b": _map(0.0, {"texture": 0.0})}
                        ) is None
    # where one map already shows a clear majority, that map is what the reader sees
    clear = {"lime": _map(0.9, {"texture": 0.1}), "activation": _map(0.4, {"texture": 0.6})}
    assert reader_evidence(None, clear)["object"] == 0.9


def test_simulated_worker_answers_the_cue_the_maps_agree_on():
    form = parse_hit_form(hit_html("k1", "image", ["a.png"]))
    worker = WorkerProfile("D", "diligent", 1.0)
    row = {"kind": "image", "evidence_panels": MIXED, "attention": ATTENTION}
    ans = choose_answers(form, row, worker, random.Random(0))
    assert (ans["shared"], ans["pattern"]) == ("yes", "background")
    one = choose_answers(form, {**row, "evidence_panels": {"lime": MIXED["lime"]}}, worker,
                         random.Random(0))
    assert one["shared"] == "no"  # a single split map leaves it open, as before


def test_truth_adds_up_the_cues_of_one_kind():
    """Two marks planted together (a border stripe and a watermark): a feature whose mass is
    0.45 on the stripe and 0.22 on the watermark is a mark feature, as the reader answers
    (its top region is a mark), not 'none'; one cue of each kind does not add up."""
    kinds = {"stripe": "mark", "watermark": "mark", "texture": "background"}
    ev = {"object": 0.25, "cues": {"stripe": 0.45, "watermark": 0.22}, "background": 0.08}
    assert truth_from_evidence(ev, kinds) == "spurious:mark"
    mixed = {"object": 0.25, "cues": {"stripe": 0.45, "texture": 0.22}, "background": 0.08}
    assert truth_from_evidence(mixed, kinds) == "none"
    assert truth_from_evidence({"object": 0.5, "cues": {"stripe": 0.25, "watermark": 0.25},
                                "background": 0.0}, kinds) == "core"  # a tie: the object
    assert truth_from_evidence({"object": 0.6, "cues": {}, "background": 0.4}, kinds) == "core"
    form = parse_hit_form(hit_html("k1", "image", ["a.png"]))
    ans = choose_answers(form, {"kind": "image", "evidence": ev, "attention": ATTENTION},
                         WorkerProfile("D", "diligent", 1.0), random.Random(0))
    assert (ans["shared"], ans["pattern"]) == ("yes", "mark")
