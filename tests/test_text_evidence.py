"""Text HIT panels beyond the highlighted comments: insertion (words that push the feature most
when appended to ordinary comments), contrast of the highlighted words, least-activating
comments of the class; what the simulated reader takes from them; and a real trained model
whose identity-term feature the highlighted comments hide and the insertion panel shows."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from bs4 import BeautifulSoup
from helpers_viz import IDENTITY_WORDS, TOXIC_WORDS, text_run

from sparse_probe.questions import default_schema
from tasks.build import BuildError, build_tasks
from tasks.simulate import WorkerProfile, choose_answers, parse_hit_form
from tasks.viz.evidence import dominant_region, text_evidence
from tasks.viz.text_attr import occlusion_attributions
from tasks.viz.text_panels import (
    INSERTION_REACH,
    TYPICAL_WORDS,
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

FAST = {"fvis_steps": 0, "n_examples": 6, "progress": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: More identity terms than insults, as in the built-in corpus's lexicons.
IDENTITY6 = [*IDENTITY_WORDS, "hindu", "sikh", "atheist"]


class MeanPoolEncoder:
    """Bag of words with mean pooling, as the built-in toxicity model: feature 0 is
    ``relu(mean word score)`` with insults 1.0, identity terms 0.9, anything else 0 (the
    feature responds to identity terms a little less than to insults)."""

    def __init__(self) -> None:
        self.scores = {**{w: 1.0 for w in TOXIC_WORDS}, **{w: 0.9 for w in IDENTITY6}}

    def encode(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros((len(texts), 1))
        for i, t in enumerate(texts):
            toks = t.lower().split()
            out[i, 0] = max(0.0, sum(self.scores.get(w, 0.0) for w in toks) / max(len(toks), 1))
        return out


TOP = [f"the post {i} was {t} and {w} you are" for i, (t, w) in
       enumerate(zip(TOXIC_WORDS * 2, IDENTITY6, strict=True))]
TOP_KINDS = [["other"] * 4 + ["insult", "other", "identity:religion", "other", "other"]
             for _ in TOP]
ORDINARY = ["the post was about this topic", "you are about the topic", "this was the post"]


def test_occlusion_hides_what_insertion_shows():
    enc = MeanPoolEncoder()
    toks = [t.split() for t in TOP]
    attrs = occlusion_attributions(enc.encode, toks, 0, 1.0)
    occ = text_evidence(attrs, TOP_KINDS, ["insult"])
    # in every comment the insult takes the larger share: the highlights never point at
    # identity terms
    assert occ["object"] > 0.5 > occ["cues"]["identity"] > 0.4
    assert dominant_region(occ) != "identity"
    words = candidate_words(toks, 50)
    assert set(IDENTITY6) | set(TOXIC_WORDS) <= set(words)
    assert words[0] in ("and", "are", "post", "the", "was", "you")  # most frequent first
    ranking = insertion_ranking(enc.encode, ORDINARY, words, 0, 1.0)
    top9 = {w for w, _ in ranking[:9]}
    assert top9 == set(TOXIC_WORDS) | set(IDENTITY6)
    assert [w for w, _ in ranking[:3]] == sorted(TOXIC_WORDS, key=words.index)  # strongest
    assert all(e > 0 for _, e in ranking[:9]) and all(e <= 0 for _, e in ranking[9:])
    # the top comments depart from an ordinary one (0) by (1 + 0.9) / 9 on average; an
    # identity term appended to an ordinary comment of L words adds 0.9 / (L + 1)
    scale = 1.9 / 9
    ins = kind_shares(ranking, word_kinds(toks, TOP_KINDS), ["insult"], scale=scale)
    # identity terms at 0.9 beside insults at 1.0, on average over every word tested: the
    # feature responds to both, and six identity terms against three insults change nothing
    assert ins["cues"]["identity"] == pytest.approx(0.9 / 1.9, abs=1e-6)
    assert ins["words"] == {"object": 3, "identity": 6, "background": len(words) - 9}
    assert dominant_region(ins) is None
    reach = np.mean([0.9 / (len(o.split()) + 1) for o in ORDINARY]) / scale
    assert ins["reach"]["identity"] == pytest.approx(reach) and reach > INSERTION_REACH
    # they take an ordinary comment more than half the way to the top comments: the reader
    # names them (the cue first, as the truth by intervention does), though insults go further
    assert ins["reach"]["object"] > ins["reach"]["identity"]
    assert text_reader_evidence({"occlusion": occ, "insertion": ins}) == {
        "object": 0.0, "cues": {"identity": 1.0}, "background": 0.0}
    # a negative sign ranks the words that lower the feature first
    low = insertion_ranking(enc.encode, ORDINARY, words, 0, -1.0)
    assert {w for w, _ in low[:9]}.isdisjoint(top9)


def test_contrast_least_and_ordinary_rows():
    enc = MeanPoolEncoder()
    toks = [t.split() for t in TOP]
    attrs = occlusion_attributions(enc.encode, toks, 0, 1.0)
    c = highlight_contrast(enc.encode, toks, attrs, 0, 1.0, baseline=0.0)
    # removing the insult and the identity term leaves nothing; keeping only them keeps all
    assert c is not None and c["removed"] == pytest.approx(0.0, abs=1e-6)
    assert c["kept"] == pytest.approx(1.0) and 0 < c["area"] < 0.5
    assert highlight_contrast(enc.encode, toks, [np.zeros(len(t)) for t in toks], 0, 1.0,
                              0.0) is None
    v = np.array([5.0, 1.0, 2.0, 3.0, 0.0, 9.0])
    assert list(ordinary_rows(v, 3)) == [2, 3, 1]
    labels = np.array([1, 1, 0, 1, 0, 1])
    assert list(least_rows(v, labels, 1, 2, 1.0)) == [1, 3]
    assert list(least_rows(v, labels, 1, 2, -1.0)) == [5, 0]
    with pytest.raises(ValueError, match="1-d"):
        ordinary_rows(np.zeros((2, 2)), 1)


def test_associated_words_screen_the_whole_split():
    toks = [["a", "x"], ["a", "y"], ["a", "x"], ["b", "y"], ["b", "x"], ["b", "y"], ["c", "x"]]
    v = np.array([3.0, 3.0, 3.0, 0.0, 0.0, 0.0, 9.0])
    assert associated_words(toks, v, 1.0, 10, min_count=3) == ["x", "a", "y", "b"]
    assert associated_words(toks, v, -1.0, 2, min_count=3) == ["b", "y"]
    assert "c" in associated_words(toks, v, 1.0, 10, min_count=1)
    with pytest.raises(ValueError, match="7 comments but values of shape"):
        associated_words(toks, v[:3])


def test_kind_shares_are_each_kinds_mean_effect_beyond_a_typical_word():
    kinds = {"muslim": "identity:religion", "jew": "identity:religion", "idiot": "insult",
             "the": "other"}
    ranking = [("muslim", 0.3), ("idiot", 0.2), ("jew", 0.1), ("the", 0.05), ("x", -0.1)]
    # means: identity (0.3 + 0.1) / 2, insults 0.2, the rest (0.05 - 0.1) / 2 (x has no kind)
    out = kind_shares(ranking, kinds, ["insult"])
    assert out["cues"]["identity"] == pytest.approx(0.5)
    assert out["object"] == pytest.approx(0.5) and out["background"] == 0.0
    assert out["words"] == {"object": 1, "identity": 2, "background": 2}
    assert "reach" not in out and "typical" not in out
    # beyond a typical word: what every part's mean exceeds the mean of the random words of
    # neither kind by (an identity term or an insult drawn among them is left out)
    typical = [("muslim", 0.9), ("the", 0.02), ("idiot", 0.7), ("zz", 0.08)]
    out = kind_shares(ranking, kinds, ["insult"], typical=typical, scale=0.6)
    assert out["reach"] == pytest.approx({"object": 0.15 / 0.6, "identity": 0.15 / 0.6,
                                          "background": 0.0})
    assert out["typical"] == pytest.approx(0.05 / 0.6)
    more = kind_shares([*ranking, ("hindu", 0.5)], {**kinds, "hindu": "identity:religion"},
                       ["insult"], typical=typical, scale=0.6)
    assert more["reach"]["identity"] == pytest.approx((0.9 / 3 - 0.05) / 0.6)
    assert more["cues"]["identity"] == pytest.approx(0.25 / 0.4)
    # a typical word that does as much as any part: no part stands out
    flat = kind_shares(ranking, kinds, ["insult"], typical=[("a", 0.2)], scale=0.6)
    assert flat["object"] == flat["cues"]["identity"] == flat["background"] == 0.0
    assert flat["reach"] == {"object": 0.0, "identity": 0.0, "background": 0.0}
    assert "reach" not in kind_shares(ranking, kinds, ["insult"], scale=0.0)
    # no random word of neither kind: the typical word does nothing
    only = kind_shares(ranking, kinds, ["insult"], typical=[("jew", 0.4)], scale=0.6)
    assert only["typical"] == 0.0 and only["reach"]["identity"] == pytest.approx(0.2 / 0.6)


def test_typical_words_are_a_reproducible_draw_of_the_vocabulary():
    toks = [[f"w{i % 40}", f"v{i % 7}", f"rare{i}"] for i in range(200)]
    vocab = sorted({f"w{i}" for i in range(40)} | {f"v{i}" for i in range(7)})
    words = typical_words(toks, n=12, seed=3)
    assert len(words) == 12 == len(set(words)) and words == sorted(words)
    assert set(words) <= set(vocab)   # "rare" words are in fewer than 3 comments
    assert typical_words(toks, n=12, seed=3) == words != typical_words(toks, n=12, seed=4)
    assert typical_words(toks, n=100) == vocab
    assert typical_words([["A", "a."], ["a"], ["a!", "b"]], n=5) == ["a"]


@pytest.mark.parametrize("reach,named", [(INSERTION_REACH, True),
                                         (INSERTION_REACH - 1e-6, False),
                                         # held-out misses at a line of one half
                                         (0.485, True), (0.499, True),
                                         # identity terms that barely move a comment
                                         (0.3, False)])
def test_reader_names_identity_terms_only_when_they_go_far_enough(reach, named):
    occ = {"object": 0.6, "cues": {"identity": 0.3}, "background": 0.1}
    ins = {"object": 0.2, "cues": {"identity": 0.7}, "background": 0.1,
           "reach": {"object": 0.1, "identity": reach, "background": 0.0}}
    seen = text_reader_evidence({"occlusion": occ, "insertion": ins})
    assert dominant_region(seen) == ("identity" if named else "object")
    # the cue first, as the truth puts it: however far the class's own words go too
    both = {"object": 0.6, "cues": {"identity": 0.4}, "background": 0.0,
            "reach": {"object": 0.9, "identity": reach, "background": 0.0}}
    seen = text_reader_evidence({"occlusion": occ, "insertion": both})
    assert dominant_region(seen) == ("identity" if named else "object")
    # the class's own words need no reach: the object is read as before
    own = {"object": 0.8, "cues": {"identity": 0.1}, "background": 0.1,
           "reach": {"object": 0.1, "identity": 0.0, "background": 0.0}}
    assert dominant_region(text_reader_evidence({"occlusion": occ, "insertion": own})) \
        == "object"


def test_reader_takes_a_dominant_insertion_panel_else_the_highlights():
    occ = {"object": 0.6, "cues": {"identity": 0.3}, "background": 0.1}
    ins = {"object": 0.2, "cues": {"identity": 0.7}, "background": 0.1}
    flat = {"object": 0.35, "cues": {"identity": 0.35}, "background": 0.3}
    assert text_reader_evidence({"occlusion": occ, "insertion": ins})["cues"]["identity"] == 0.7
    assert text_reader_evidence({"occlusion": occ, "insertion": flat})["object"] == 0.6
    assert text_reader_evidence(None, occ) is occ
    assert text_reader_evidence({}, None) is None


@pytest.fixture(scope="module")
def toy_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("txt")
    probe, feats, src = text_run(root)
    res = build_tasks(probe, feats, root / "tasks", source=src, gold_share=0.0, **FAST)
    return root, res


def test_text_hit_pages_show_every_panel_and_say_what_it_shows(toy_build):
    root, res = toy_build
    by_feature = {r["feature"]: r for r in res.manifest}
    for r in res.manifest:
        assert set(r["evidence_panels"]) == {"occlusion", "insertion"}
        assert {"removed", "kept", "area"} <= set(r["evidence_panels"]["occlusion"])
        soup = BeautifulSoup((root / "tasks" / r["html"]).read_text(), "html5lib")
        for sid in ("insertion", "least"):
            sec = soup.find("section", id=sid)
            assert sec is not None and sec.find("p", class_="panel-note").get_text().strip()
        assert len(soup.select("ol.least-texts li")) == 6
        assert "highlighted words removed" in soup.get_text()
        words = [td.get_text() for td in soup.select("table.insertion td.word")]
        assert words
        if r["feature"] == 1:   # the identity-term feature: its words lead the panel
            assert set(words) <= set(IDENTITY_WORDS)
            assert r["evidence_panels"]["insertion"]["cues"]["identity"] == 1.0
            assert r["truth"] == "spurious:identity"
            # each word's effect is shown as the share of the way to the top comments: one
            # identity term adds 1 to the count, whose shown comments depart from an ordinary
            # comment (the median) by their mean count minus the median
            X = np.load(root / "features" / "val.npy")[:, 1]
            ids = json.loads((root / "features" / "val_ids.json").read_text())
            rows = [ids.index(i) for i in r["example_ids"]]
            departure = float(X[rows].mean() - np.median(X))
            shown = [td.get_text().strip() for td in soup.select("table.insertion td")[1::2]]
            assert shown and all(t == f"{round(100 / departure)}%" for t in shown)
            assert r["evidence_panels"]["insertion"]["reach"]["identity"] == pytest.approx(
                1 / departure)
        if r["feature"] == 0:
            assert set(words) <= set(TOXIC_WORDS) and r["truth"] == "core"
    # the least-activating comments are the class's own
    ids = json.loads((root / "features" / "val_ids.json").read_text())
    assert len(ids) == 30 and by_feature[2]["class_name"] == "non-toxic"


def test_mturk_layout_shows_the_panels_asset(toy_build):
    root, res = toy_build
    out = root / "tasks"
    with open(out / "batch.csv", newline="") as fh:
        rows = {r["hit_key"]: r for r in csv.DictReader(fh)}
    assert "${panels_file}" in (out / "template.html").read_text()
    for r in res.manifest:
        name = rows[r["hit_key"]]["panels_file"]
        assert name == Path(r["assets"]["panels"]).name
        soup = BeautifulSoup((out / "assets" / name).read_text(), "html5lib")
        words = [td.get_text() for td in soup.select("table.insertion td.word")]
        page = BeautifulSoup((out / r["html"]).read_text(), "html5lib")
        assert words == [td.get_text() for td in page.select("table.insertion td.word")]
        assert len(soup.select("ol.least-texts li")) == 6
        if r["feature"] == 1:
            assert set(words) <= set(IDENTITY_WORDS)


def test_simulated_reader_answers_from_the_panels_it_is_shown(toy_build):
    root, res = toy_build
    row = next(r for r in res.manifest if r["feature"] == 1)
    # the highlighted comments alone would not settle it; the insertion panel does
    row = {**row, "evidence_panels": {
        "occlusion": {"object": 0.5, "cues": {"identity": 0.4}, "background": 0.1},
        "insertion": row["evidence_panels"]["insertion"]}}
    form = parse_hit_form((root / "tasks" / row["html"]).read_text())
    worker = WorkerProfile("W1", "diligent", 1.0)
    ans = choose_answers(form, row, worker, random.Random(0), default_schema())
    assert ans["shared"] == "yes" and ans["pattern"] == "identity"
    no_ins = {**row, "evidence_panels": {"occlusion": row["evidence_panels"]["occlusion"]}}
    ans = choose_answers(form, no_ins, worker, random.Random(0), default_schema())
    assert ans["pattern"] != "identity"


@pytest.mark.parametrize("opts, msg", [
    ({"insertion_words": -1}, "insertion_words must be an integer >= 0, got -1"),
    ({"insertion_texts": "8"}, "insertion_texts must be an integer >= 0, got '8'"),
    ({"insertion_texts": True}, "insertion_texts must be an integer >= 0, got True"),
])
def test_bad_insertion_options_get_one_line_errors(tmp_path, opts, msg):
    probe, feats, src = text_run(tmp_path)
    with pytest.raises(BuildError) as exc:
        build_tasks(probe, feats, tmp_path / "tasks", source=src, **FAST, **opts)
    assert str(exc.value) == msg and "\n" not in str(exc.value)


def test_insertion_off_leaves_the_highlights(tmp_path):
    probe, feats, src = text_run(tmp_path)
    res = build_tasks(probe, feats, tmp_path / "tasks", source=src, gold_share=0.0,
                      insertion_words=0, **FAST)
    for r in res.manifest:
        assert set(r["evidence_panels"]) == {"occlusion"}
        page = (tmp_path / "tasks" / r["html"]).read_text()
        assert 'id="insertion"' not in page


@pytest.mark.slow
def test_real_toxicity_model_identity_feature_shown_by_insertion(tmp_path):
    """The built-in toxicity model (quick, seed 0), its sparse head, real HITs: the toxic HITs
    the reader flags are those whose identity terms, appended to ordinary comments, move the
    feature at least half the way to its top comments beyond words picked at random; the
    truth by intervention agrees (identity terms carry at least half of each), and one of them
    is a feature the highlighted comments hide (no highlight on an identity term); no
    non-toxic HIT shows identity terms. (Seed 1, used here until 2026-12-02, has one toxic
    feature that identity terms carry 0.40 of: mixed, and no longer flagged.)"""
    from sparse_probe.datasets import IDENTITY_TERMS, prepare_builtin
    from sparse_probe.fitting import fit_features

    feats = prepare_builtin("toxicity", tmp_path, seed=0, quick=True, progress=False)
    fit_features(feats, tmp_path / "probe", n_lambdas=25, eps=2e-2,
                 select_rule="val_acc_within=0.05", progress=False)
    res = build_tasks(tmp_path / "probe", feats, tmp_path / "tasks", gold_share=0.0,
                      k_features=4, **FAST)
    identity = {t for terms in IDENTITY_TERMS.values() for t in terms}
    toxic = [r for r in res.manifest if r["class_name"] == "toxic"]
    flagged = [r for r in toxic if r["truth_maps"] == "spurious:identity"]
    assert flagged
    for r in toxic:
        ins = r["evidence_panels"]["insertion"]
        assert (r in flagged) == (ins["reach"]["identity"] >= INSERTION_REACH)
    for r in flagged:
        assert r["removal"]["kinds"]["identity"] >= 0.5
        assert r["truth"] == "spurious:identity"
        soup = BeautifulSoup((tmp_path / "tasks" / r["html"]).read_text(), "html5lib")
        words = [td.get_text() for td in soup.select("table.insertion td.word")]
        assert sum(w in identity for w in words) > len(words) / 2
        shown = soup.select_one("details.typical-words p").get_text().split(" · ")
        assert len(shown) == TYPICAL_WORDS and soup.select_one("p.typical-note").get_text()
    assert min(r["evidence_panels"]["occlusion"]["cues"]["identity"] for r in flagged) < 0.5
    for r in res.manifest:
        if r["class_name"] == "non-toxic":
            assert r["truth"] != "spurious:identity"
            assert r["evidence_panels"]["insertion"]["cues"]["identity"] < 0.2


def test_insertion_panel_lists_every_word_and_the_random_words_escaped():
    from tasks.hit_render import INSERTION_TOP, TYPICAL_NOTE, render_text_panels

    ranking = [(f"w{i}", round(1.0 - 0.08 * i, 2)) for i in range(14)]   # w13 is -0.04
    ranking[1] = ("<b>x</b>", 0.92)
    typical = [("the", 0.3), ("a", -0.1), ("of", 0.1), ("<i>", 0.0)]
    soup = BeautifulSoup(render_text_panels(ranking, None, [], typical), "html5lib")
    bars = [td.get_text() for td in soup.select("table.insertion td.word")]
    assert bars == [w for w, _ in ranking[:INSERTION_TOP]]
    rest = soup.select_one("details.insertion-rest p").get_text().split(" · ")
    assert rest == [f"{w} {round(100 * e)}%" for w, e in ranking[INSERTION_TOP:]]
    assert soup.select_one("p.typical-note").get_text() == TYPICAL_NOTE.format(pct=5, n=4)
    assert soup.select_one("details.typical-words p").get_text().split(" · ") == [
        "the 30%", "a -10%", "of 10%", "<i> 0%"]
    assert soup.find("b") is None and soup.find("i") is None   # words are escaped
    # bars stop at the first word that does not push the feature; nothing pushes it: no panel
    low = render_text_panels([("a", 0.5), ("b", 0.0), ("c", 0.4)], None, [], typical)
    low_soup = BeautifulSoup(low, "html5lib")
    assert [td.get_text() for td in low_soup.select("table.insertion td.word")] == ["a"]
    assert low_soup.select_one("details.insertion-rest p").get_text() == "b 0% · c 40%"
    none = BeautifulSoup(render_text_panels([("a", -0.5)], None, [], typical), "html5lib")
    assert none.find(id="insertion") is None and none.select_one("p.typical-note") is None


def test_kind_shares_of_absent_kinds_and_the_rest_scaled():
    kinds = {"muslim": "identity:religion", "idiot": "insult"}
    # no insult tested: the class's words count 0, not a mean of nothing
    only = kind_shares([("muslim", 0.4), ("the", 0.2), ("a", 0.0)], kinds, ["insult"],
                       scale=0.5)
    assert only["words"] == {"object": 0, "identity": 1, "background": 2}
    assert only["object"] == 0.0 and only["reach"]["object"] == 0.0
    assert only["cues"]["identity"] == pytest.approx(0.4 / 0.5)
    assert only["background"] == pytest.approx(0.1 / 0.5)
    assert only["reach"]["background"] == pytest.approx(0.1 / 0.5)
    assert only["reach"]["identity"] == pytest.approx(0.4 / 0.5)
    # a word the kinds do not know is one of the rest, whatever the class's kinds are called
    assert kind_shares([("zz", 0.3)], kinds, ["insult"])["background"] == 1.0


def test_reader_reads_each_panel_whole():
    occ = {"object": 0.1, "cues": {"identity": 0.2}, "background": 0.7}
    # reach without identity terms: none named; the class's words dominating the panel with a
    # reach are read from the panel, not from the highlights
    own = {"object": 0.8, "cues": {"identity": 0.1}, "background": 0.1,
           "reach": {"object": 0.9}}
    assert text_reader_evidence({"occlusion": occ, "insertion": own}) == {
        "object": 0.8, "cues": {"identity": 0.1}, "background": 0.1}
    # neither dominant: the highlights, every part of them
    flat = {"object": 0.35, "cues": {"identity": 0.35}, "background": 0.3, "reach": {}}
    assert text_reader_evidence({"occlusion": occ, "insertion": flat}) == occ
    assert text_reader_evidence({"occlusion": {"cues": {"identity": 0.5}},
                                 "insertion": flat}) == {
        "object": 0.0, "cues": {"identity": 0.5}, "background": 0.0}


def test_typical_words_default_draw_is_seed_zero():
    toks = [[f"w{i % 40}"] for i in range(200)]
    assert typical_words(toks, n=12) == typical_words(toks, n=12, seed=0)


def test_no_insertion_evidence_where_the_page_shows_no_insertion_panel(tmp_path):
    """A feature the class counts against, shown where it is lowest: the identity-term count
    is 0 on most comments, so its lowest comments are ordinary ones (no departure from the
    median). The page shows no insertion panel, and the reader must not read one."""
    from helpers_viz import BagOfWordsEncoder, synthetic_texts, write_run

    from tasks.viz.source import ExampleSource

    texts, kinds, labels = synthetic_texts(30)
    plain = [f"plain words number {i} here" for i in range(10)]   # no word of any kind
    texts, labels = texts + plain, np.concatenate([labels, np.zeros(10, labels.dtype)])
    kinds = kinds + [["other"] * 5 for _ in plain]
    enc = BagOfWordsEncoder()
    X = enc.encode(texts).numpy()
    assert np.median(X[:, 1]) == X[:, 1].min()   # most comments have no identity term
    top = [{"class": 0, "class_name": "non-toxic", "feature": 1, "weight": -1.0, "rank": 1},
           {"class": 1, "class_name": "toxic", "feature": 1, "weight": 0.8, "rank": 1}]
    probe, feats = write_run(tmp_path, "text", X, labels, texts, top, ["non-toxic", "toxic"])
    src = ExampleSource(kind="text", texts=texts, features=enc.encode, token_kinds=kinds)
    res = build_tasks(probe, feats, tmp_path / "tasks", source=src, gold_share=0.0, **FAST)
    by_class = {r["class_name"]: r for r in res.manifest}
    low, high = by_class["non-toxic"], by_class["toxic"]
    assert low["direction"] == "lowest" and high["direction"] == "highest"
    assert set(low["evidence_panels"]) == {"occlusion"}
    assert 'id="insertion"' not in (tmp_path / "tasks" / low["html"]).read_text()
    assert set(high["evidence_panels"]) == {"occlusion", "insertion"}
    assert 'id="insertion"' in (tmp_path / "tasks" / high["html"]).read_text()
