"""term_test's bookkeeping on text models whose every answer is known.

The main model scores a text by its words: p(toxic) = 0.25 + the sum of the words' weights
(``hate`` +0.5, ``jew`` +0.5, ``muslim`` / ``christian`` +0.25, ``nice`` -0.25), clipped to
[0, 1]; the threshold is 0.5, met exactly by several texts before and after an edit. Every row's
n, flips, rate, Wilson interval, mean shift and direction then follow by hand, as do the
examples, the pooled rows, the paired comparisons and the verdicts against the control group.
A second model's p(toxic) grows with the text's length, so that every edit moves it by a
different amount and the bootstrap intervals of the shifts are pinned to their seeds.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from scipy.stats import norm

import analysis.counterfactual.text as text_mod
from analysis.counterfactual import (
    bootstrap_mean_interval,
    check_lexicon,
    group_verdicts,
    insert_term,
    term_test,
)

WEIGHTS = {"hate": 0.5, "jew": 0.5, "muslim": 0.25, "christian": 0.25, "nice": -0.25}
#: p(toxic): 0.25, 0.75, 0.5 (the threshold), 0.0, 0.5 (the threshold)
TEXTS = ["a", "hate", "nice hate", "nice", "muslim"]
LEX = {"religion": ["muslim", "christian", "jew"], "control": ["table", "lamp"],
       "kind": ["nice"]}
KEYS = {"test", "model", "group", "term", "direction", "n", "flips", "flip_rate", "ci_low",
        "ci_high", "mean_prob_increase", "shift_ci_low", "shift_ci_high"}
MODES_MSG = "('append', 'prepend', 'random', 'template')"


def _exact(message: str) -> str:
    return f"^{re.escape(message)}$"


def _probs(p) -> np.ndarray:
    p = np.asarray(p, float)
    return np.stack([1 - p, p], 1)


def words(texts) -> np.ndarray:
    return _probs([min(1.0, max(0.0, 0.25 + sum(WEIGHTS.get(w, 0.0) for w in t.split())))
                   for t in texts])


def flat(texts) -> np.ndarray:
    return _probs([0.25] * len(texts))


def wilson(k: int, n: int) -> tuple[float, float]:
    z = float(norm.ppf(0.975))
    c = (k + z * z / 2) / (n + z * z)
    h = z * math.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return max(0.0, c - h), min(1.0, c + h)


def _run(**kw):
    return term_test({"m": words, "flat": flat}, TEXTS, LEX, threshold=0.5, **kw)


def _by(rows, model="m"):
    return {(r["group"], r["term"], r["direction"]): r for r in rows if r["model"] == model}


# --- insert_term ---------------------------------------------------------------------------


def test_insert_term_appends_prepends_and_fills_templates():
    assert insert_term("a", "b") == "a b"  # append is the default
    assert insert_term("  hello  world  ", "X") == "  hello  world X"
    assert insert_term("  hello  world  ", "X", "append") == "  hello  world X"
    assert insert_term("  hello  world  ", "X", "prepend") == "X hello  world  "
    assert insert_term("it rains", "X", "template", "{term} said: {text}!") == "X said: it rains!"
    assert insert_term("t", "X", "template", "{text}{text}/{term}") == "tt/X"


@pytest.mark.parametrize("template", [None, "", "{text} only", "{term} only", "neither",
                                     "{TEXT} {TERM}"])
def test_a_template_needs_both_fields(template):
    with pytest.raises(ValueError, match=_exact(
            "template: expected a string containing {text} and {term}")):
        insert_term("t", "X", "template", template)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match=_exact(f"mode: expected one of {MODES_MSG}, "
                                                "got 'sideways'")):
        insert_term("t", "X", "sideways")
    with pytest.raises(ValueError, match=_exact(f"mode: expected one of {MODES_MSG}, "
                                                "got 'APPEND'")):
        insert_term("t", "X", "APPEND")


def test_random_insertion_draws_a_word_gap_from_the_generator():
    # with a generator: gap i in 0..len(words) drawn as integers(0, len(words) + 1), in turn
    rng, ref = np.random.default_rng(5), np.random.default_rng(5)
    gaps = []
    for _ in range(20):
        i = int(ref.integers(0, 4))
        gaps.append(i)
        assert insert_term(" a  b\tc ", "X", "random", rng=rng) == \
            " ".join([*"abc"[:i], "X", *"abc"[i:]])
    assert set(gaps) == {0, 1, 2, 3}  # both ends included
    # without one: a fresh default_rng(0) every call, so the same gap every time
    six = ["a", "b", "c", "d", "e", "f"]
    i = int(np.random.default_rng(0).integers(0, 7))
    assert i != int(np.random.default_rng(1).integers(0, 7))
    for _ in range(5):
        assert insert_term(" ".join(six), "X", "random") == " ".join([*six[:i], "X", *six[i:]])
    assert insert_term("", "X", "random") == "X"


# --- check_lexicon -------------------------------------------------------------------------


def test_check_lexicon_strips_terms_and_names_groups_as_strings():
    assert check_lexicon({1: [" a ", 2], "g": ("b",)}) == {"1": ["a", "2"], "g": ["b"]}


@pytest.mark.parametrize(("lexicon", "message"), [
    ({}, "lexicon: expected a non-empty mapping {group: [terms]}"),
    ([("g", ["a"])], "lexicon: expected a non-empty mapping {group: [terms]}"),
    ({"g": "abc"}, "lexicon: group 'g' must be a list of terms"),
    ({"g": {"abc"}}, "lexicon: group 'g' must be a list of terms"),
    ({"g": 5}, "lexicon: group 'g' must be a list of terms"),
    ({"ok": ["a"], "g": []}, "lexicon: group 'g' has no terms"),
    ({"g": ["a", "  "]}, "lexicon: group 'g' has an empty term"),
])
def test_check_lexicon_refuses_with_one_line(lexicon, message):
    with pytest.raises(ValueError, match=_exact(message)):
        check_lexicon(lexicon)


# --- term_test: every row by hand ----------------------------------------------------------

#: (group, term, direction) -> n, flips, the shifts of p(toxic) of the eligible texts
HAND = {
    ("religion", "muslim", "to_toxic"): (2, 1, [0.25, 0.25]),
    ("religion", "muslim", "to_nontoxic"): (3, 0, [0.25, 0.25, 0.25]),
    ("religion", "christian", "to_toxic"): (2, 1, [0.25, 0.25]),
    ("religion", "christian", "to_nontoxic"): (3, 0, [0.25, 0.25, 0.25]),
    ("religion", "jew", "to_toxic"): (2, 2, [0.5, 0.5]),  # 'nice jew' meets 0.5 exactly
    ("religion", "jew", "to_nontoxic"): (3, 0, [0.25, 0.5, 0.5]),  # 'hate jew' clipped at 1
    ("control", "table", "to_toxic"): (2, 0, [0.0, 0.0]),
    ("control", "table", "to_nontoxic"): (3, 0, [0.0, 0.0, 0.0]),
    ("control", "lamp", "to_toxic"): (2, 0, [0.0, 0.0]),
    ("control", "lamp", "to_nontoxic"): (3, 0, [0.0, 0.0, 0.0]),
    ("kind", "nice", "to_toxic"): (2, 0, [-0.25, 0.0]),  # 'nice nice' clipped at 0
    # 'hate nice' falls to 0.5 and stays toxic; 'nice hate nice' and 'muslim nice' flip
    ("kind", "nice", "to_nontoxic"): (3, 2, [-0.25, -0.25, -0.25]),
    ("religion", "*", "to_toxic"): (6, 4, [0.25, 0.25, 0.25, 0.25, 0.5, 0.5]),
    ("religion", "*", "to_nontoxic"): (9, 0, [0.25] * 6 + [0.25, 0.5, 0.5]),
    ("control", "*", "to_toxic"): (4, 0, [0.0] * 4),
    ("control", "*", "to_nontoxic"): (6, 0, [0.0] * 6),
    ("kind", "*", "to_toxic"): (2, 0, [-0.25, 0.0]),
    ("kind", "*", "to_nontoxic"): (3, 2, [-0.25] * 3),
}


def test_every_row_counts_what_the_model_says_at_the_threshold():
    res = _run()
    m, f = _by(res.rows), _by(res.rows, "flat")
    assert len(res.rows) == 2 * len(HAND) and set(m) == set(f) == set(HAND)
    for key, (n, k, shifts) in HAND.items():
        r = m[key]
        assert set(r) == KEYS and r["test"] == "text_term"
        assert (r["model"], r["group"], r["term"], r["direction"]) == ("m", *key)
        assert (r["n"], r["flips"]) == (n, k), key
        assert r["flip_rate"] == k / n
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(wilson(k, n), abs=1e-12)
        assert r["mean_prob_increase"] == pytest.approx(np.mean(shifts), abs=1e-12), key
        if len(set(shifts)) == 1:  # every resample has the same mean
            assert (r["shift_ci_low"], r["shift_ci_high"]) == pytest.approx((shifts[0],) * 2)
        else:
            assert min(shifts) <= r["shift_ci_low"] <= r["shift_ci_high"] <= max(shifts)
        # the flat model (0.25 for every text) never flips and never moves
        g = f[key]
        n_flat = 0 if key[2] == "to_nontoxic" else 5 * (
            len(LEX[key[0]]) if key[1] == "*" else 1)
        assert (g["n"], g["flips"]) == (n_flat, 0), key
        if n_flat:
            assert g["flip_rate"] == g["mean_prob_increase"] == 0.0
        else:
            assert math.isnan(g["flip_rate"]) and math.isnan(g["mean_prob_increase"])
    # flat: every text is non-toxic, so every edit is eligible to become toxic
    assert f[("religion", "jew", "to_toxic")]["n"] == 5
    assert f[("religion", "*", "to_toxic")]["n"] == 15
    assert f[("religion", "*", "to_nontoxic")]["n"] == 0
    # the pooled rows come first, per model and group in order, then the terms
    order = [(r["model"], r["group"], r["term"], r["direction"]) for r in res.rows]
    assert order[:4] == [("m", "religion", "*", "to_toxic"), ("m", "religion", "*", "to_nontoxic"),
                         ("flat", "religion", "*", "to_toxic"),
                         ("flat", "religion", "*", "to_nontoxic")]
    assert order[12:16] == [("m", "religion", "muslim", "to_toxic"),
                            ("m", "religion", "muslim", "to_nontoxic"),
                            ("flat", "religion", "muslim", "to_toxic"),
                            ("flat", "religion", "muslim", "to_nontoxic")]


def test_an_empty_direction_is_nan_without_warnings():
    # threshold 0: every text is toxic before and after, so nothing can become toxic
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = term_test({"m": words}, TEXTS, {"religion": ["jew"]}, threshold=0.0)
    r = _by(res.rows)
    for term in ("jew", "*"):
        up, down = r[("religion", term, "to_toxic")], r[("religion", term, "to_nontoxic")]
        assert (up["n"], up["flips"]) == (0, 0)
        for k in ("flip_rate", "ci_low", "ci_high", "mean_prob_increase", "shift_ci_low",
                  "shift_ci_high"):
            assert math.isnan(up[k]), k
        assert (down["n"], down["flips"]) == (5, 0)
        assert down["mean_prob_increase"] == pytest.approx((0.5 + 0.25 + 0.5 + 0.5 + 0.5) / 5)
    # threshold 1: only p(toxic) == 1 is toxic ('hate jew', 'nice hate jew', 'muslim jew')
    res = term_test({"m": words}, TEXTS, {"religion": ["jew"]}, threshold=1.0)
    up = _by(res.rows)[("religion", "jew", "to_toxic")]
    assert (up["n"], up["flips"]) == (5, 3)


def test_examples_are_capped_per_model_and_group():
    def ex(res):
        return [(e["model"], e["group"], e["term"], e["direction"], e["before"], e["after"])
                for e in res.examples]

    res = _run()  # n_examples=3 by default
    assert all(set(e) == {"model", "group", "term", "direction", "before", "after"}
               for e in res.examples)
    assert ex(res) == [
        ("m", "religion", "muslim", "to_toxic", "a", "a muslim"),
        ("m", "religion", "christian", "to_toxic", "a", "a christian"),
        ("m", "religion", "jew", "to_toxic", "a", "a jew"),  # 'nice jew' is the 4th: left out
        ("m", "kind", "nice", "to_nontoxic", "nice hate", "nice hate nice"),
        ("m", "kind", "nice", "to_nontoxic", "muslim", "muslim nice"),
    ]
    assert ex(_run(n_examples=2)) == [
        ("m", "religion", "muslim", "to_toxic", "a", "a muslim"),
        ("m", "religion", "christian", "to_toxic", "a", "a christian"),
        ("m", "kind", "nice", "to_nontoxic", "nice hate", "nice hate nice"),
        ("m", "kind", "nice", "to_nontoxic", "muslim", "muslim nice"),
    ]
    assert ex(_run(n_examples=1)) == [
        ("m", "religion", "muslim", "to_toxic", "a", "a muslim"),
        ("m", "kind", "nice", "to_nontoxic", "nice hate", "nice hate nice"),
    ]
    assert _run(n_examples=0).examples == []
    # a second model that flips the same texts gets its own quota
    twin = term_test({"m": words, "twin": words}, TEXTS, {"kind": ["nice"]}, threshold=0.5,
                     n_examples=1)
    assert ex(twin) == [("m", "kind", "nice", "to_nontoxic", "nice hate", "nice hate nice"),
                        ("twin", "kind", "nice", "to_nontoxic", "nice hate", "nice hate nice")]


def test_paired_comparisons_cover_each_pair_of_models_once():
    res = _run()
    assert [(p["group"], p["model_a"], p["model_b"]) for p in res.paired] == [
        ("religion", "m", "flat"), ("control", "m", "flat"), ("kind", "m", "flat")]
    # religion: 15 edits; m flips 'a' under every term and 'nice' under 'jew', flat never
    assert res.paired[0] == {"test": "text_term", "group": "religion", "model_a": "m",
                             "model_b": "flat", "n": 15, "a_rate": 4 / 15, "b_rate": 0.0,
                             "both": 0, "neither": 11, "a_only": 4, "b_only": 0,
                             "p_value": 2 * 0.5 ** 4}
    assert res.paired[2]["a_only"] == 2 and res.paired[2]["n"] == 5
    three = term_test({"a": words, "b": flat, "c": words}, TEXTS, {"kind": ["nice"]},
                      threshold=0.5)
    assert [(p["model_a"], p["model_b"]) for p in three.paired] == [("a", "b"), ("a", "c"),
                                                                     ("b", "c")]
    assert three.paired[1]["both"] == 2 and three.paired[1]["p_value"] == 1.0


# --- bootstrap intervals of the shifts: seeds and clusters ---------------------------------

ALPHABET = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota",
            "kappa"]
LONG = [" ".join(ALPHABET[:1 + i % 10]) + f" {i}" for i in range(30)]
FORMS = ["{text} {term}", "{text} / {text} {term}"]
LEX_B = {"g": ["ab", "abcd"], "h": ["x"]}


def by_length(texts) -> np.ndarray:
    return _probs([min(1.0, len(t) / 100) for t in texts])


def slower(texts) -> np.ndarray:
    return _probs([min(1.0, len(t) / 120) for t in texts])


MODELS_B = {"len": by_length, "slower": slower}


def _expected_intervals(seed: int, n_boot: int, threshold: float = 0.3):
    """Row k (per term, model and direction in turn; then pooled per model and group) takes
    seed + k, and resamples the source texts (each text's edits move together)."""
    out, k, pool = {}, 0, {}
    origin = np.array([i for _ in FORMS for i in range(len(LONG))])
    for group, terms in LEX_B.items():
        for term in terms:
            edited = [f.format(text=t, term=term) for f in FORMS for t in LONG]
            for name, fn in MODELS_B.items():
                p0, p1 = fn(LONG)[origin, 1], fn(edited)[:, 1]
                y0 = p0 >= threshold
                for direction, elig in (("to_toxic", ~y0), ("to_nontoxic", y0)):
                    k += 1
                    v, ids = p1[elig] - p0[elig], origin[elig]
                    out[(name, group, term, direction)] = bootstrap_mean_interval(
                        v, ids, n_boot, seed=seed + k)
                    pool.setdefault((name, group), {}).setdefault(direction, []).append(
                        (v, ids))
    for (name, group), dirs in pool.items():
        for direction in ("to_toxic", "to_nontoxic"):
            k += 1
            v = np.concatenate([a for a, _ in dirs[direction]])
            ids = np.concatenate([b for _, b in dirs[direction]])
            out[(name, group, "*", direction)] = bootstrap_mean_interval(v, ids, n_boot,
                                                                         seed=seed + k)
    return out


def _intervals(res):
    return {(r["model"], r["group"], r["term"], r["direction"]):
            (r["shift_ci_low"], r["shift_ci_high"]) for r in res.rows}


def test_shift_intervals_are_seeded_per_row_and_resample_texts():
    res = term_test(MODELS_B, LONG, LEX_B, templates=FORMS, threshold=0.3, seed=5, n_boot=200)
    got, want = _intervals(res), _expected_intervals(5, 200)
    assert got == want
    # the check has teeth: a neighbouring seed moves every interval, and so does resampling
    # the edits rather than the texts
    assert all(want[key] != iv for key, iv in _expected_intervals(6, 200).items())
    r = _by(res.rows, "len")[("g", "abcd", "to_nontoxic")]
    assert r["n"] > 10 and r["flips"] == 0
    v = [x for x in (by_length([f.format(text=t, term="abcd")])[0, 1] - by_length([t])[0, 1]
                     for f in FORMS for t in LONG if len(t) >= 30)]
    assert len(v) == r["n"] and r["mean_prob_increase"] == pytest.approx(np.mean(v))
    assert (r["shift_ci_low"], r["shift_ci_high"]) != bootstrap_mean_interval(
        np.array(v), None, 200, seed=5 + 6)


def test_defaults_seed_0_and_1000_resamples():
    res = term_test(MODELS_B, LONG, LEX_B, templates=FORMS, threshold=0.3)
    assert _intervals(res) == _expected_intervals(0, 1000)
    assert res.rows == term_test(MODELS_B, LONG, LEX_B, templates=FORMS, threshold=0.3,
                                 seed=0, n_boot=1000).rows


def test_progress_bar_counts_every_edited_text(monkeypatch):
    bars = []

    class Bar:
        def __init__(self, **kw):
            self.kw, self.updates, self.closed = kw, [], False
            bars.append(self)

        def update(self, n):
            self.updates.append(n)

        def close(self):
            self.closed = True

    monkeypatch.setattr(text_mod, "tqdm", Bar)
    term_test(MODELS_B, LONG, LEX_B, templates=FORMS, threshold=0.3, batch_size=25, n_boot=10)
    (bar,) = bars
    # 3 terms x 2 templates x 30 texts x 2 models
    assert bar.kw == {"total": 360, "desc": "term insertion", "unit": "text", "disable": None}
    assert bar.updates == [25, 25, 10] * 6 and bar.closed


# --- batches, sampling, templates and random insertion -------------------------------------


def _recorder(fn=flat):
    calls = []

    def model(texts):
        calls.append(list(texts))
        return fn(texts)

    return model, calls


@pytest.mark.parametrize(("batch_size", "sizes"), [
    (1, [1] * 5), (2, [2, 2, 1]), (4, [4, 1]), (5, [5]), (6, [5])])
def test_models_are_called_in_batches(batch_size, sizes):
    model, calls = _recorder(words)
    res = term_test({"m": model}, TEXTS, {"religion": ["jew"]}, threshold=0.5,
                    batch_size=batch_size)
    assert [len(c) for c in calls] == sizes * 2  # the originals, then the edits
    assert [t for c in calls for t in c] == TEXTS + [f"{t} jew" for t in TEXTS]
    assert _by(res.rows)[("religion", "jew", "to_toxic")]["flips"] == 2


def test_defaults_sample_200_texts_and_call_in_batches_of_256():
    many = [f"comment number {i}" for i in range(201)]
    model, calls = _recorder()
    term_test({"m": model}, many, {"g": ["x"]}, templates=["{text} {term}", "{term}: {text}"])
    pick = [many[i] for i in sorted(np.random.default_rng(0).choice(201, 200, replace=False))]
    assert [len(c) for c in calls] == [200, 256, 144]
    assert calls[0] == pick
    assert calls[1] + calls[2] == [f"{t} x" for t in pick] + [f"x: {t}" for t in pick]
    model, calls = _recorder()
    term_test({"m": model}, many, {"g": ["x"]}, n=150, seed=7)
    assert calls[0] == [many[i] for i in
                        sorted(np.random.default_rng(7).choice(201, 150, replace=False))]


def test_random_insertion_shares_one_generator_across_texts_and_terms():
    texts = ["one two three", "four five", "six", "seven eight nine ten"]
    model, calls = _recorder()
    # as many texts as n: none is sampled, so the generator starts fresh on the insertions
    term_test({"m": model}, texts, {"g": ["T1", "T2"], "h": ["T3"]}, mode="random", n=4,
              seed=3)
    rng, want = np.random.default_rng(3), []
    for term in ("T1", "T2", "T3"):
        for t in texts:
            w = t.split()
            i = int(rng.integers(0, len(w) + 1))
            want.append(" ".join([*w[:i], term, *w[i:]]))
    assert [t for c in calls[1:] for t in c] == want


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"texts": []}, "texts: no texts to edit"),
    ({"texts": "one comment"}, "texts: expected a sequence of texts, got one string"),
    ({"n": 0}, "n: expected a positive number of texts, got 0"),
    ({"n": 2.5}, "n: expected a positive number of texts, got 2.5"),
    ({"n": True}, "n: expected a positive number of texts, got True"),
    ({"predictors": {}}, "predictors: expected at least one model"),
    ({"toxic_class": True}, "toxic_class: expected a class index >= 0, got True"),
    ({"toxic_class": "1"}, "toxic_class: expected a class index >= 0, got '1'"),
    ({"toxic_class": 1.0}, "toxic_class: expected a class index >= 0, got 1.0"),
    ({"toxic_class": -1}, "toxic_class: expected a class index >= 0, got -1"),
    ({"toxic_class": 2, "n_classes": 2}, "toxic_class: 2 is out of range for 2 classes"),
    ({"threshold": 1.5}, "threshold: expected a probability in [0, 1], got 1.5"),
    ({"threshold": -0.01}, "threshold: expected a probability in [0, 1], got -0.01"),
    ({"batch_size": 0}, "batch_size: expected a positive integer, got 0"),
    ({"mode": "middle"}, f"mode: expected one of {MODES_MSG}, got 'middle'"),
])
def test_bad_arguments_are_refused_before_any_model_runs(kwargs, message):
    model, calls = _recorder()
    args = {"predictors": {"m": model}, "texts": TEXTS, "lexicon": LEX, **kwargs}
    with pytest.raises(ValueError, match=_exact(message)):
        term_test(args.pop("predictors"), args.pop("texts"), args.pop("lexicon"), **args)
    assert calls == []


def test_one_text_is_enough():
    model, calls = _recorder()
    res = term_test({"m": model}, TEXTS, {"g": ["x"]}, n=1, seed=4)
    assert len(calls[0]) == 1 and sum(r["n"] for r in res.rows if r["term"] == "x") == 1
    res = term_test({"m": model}, TEXTS, {"g": ["x"]}, n=np.int64(2))
    assert sum(r["n"] for r in res.rows if r["term"] == "x") == 2


def test_class_zero_and_numpy_indices_are_accepted_and_the_models_width_checked():
    # class 0 as the 'toxic' one: p(class 0) = 1 - p(toxic) >= 0.5 for every text but 'hate';
    # 'jew' takes 0.5 from it: 'a', 'nice hate' and 'muslim' drop below, 'nice' stays at 0.5
    res = term_test({"m": words}, TEXTS, {"religion": ["jew"]}, toxic_class=0, threshold=0.5)
    r = _by(res.rows)
    assert (r[("religion", "jew", "to_toxic")]["n"], r[("religion", "jew", "to_toxic")]["flips"]
            ) == (1, 0)
    down = r[("religion", "jew", "to_nontoxic")]
    assert (down["n"], down["flips"]) == (4, 3)
    assert down["mean_prob_increase"] == pytest.approx(-0.5)  # the shift of class 0
    same = term_test({"m": words}, TEXTS, {"religion": ["jew"]}, toxic_class=np.int64(1),
                     threshold=0.5)
    assert same.rows == term_test({"m": words}, TEXTS, {"religion": ["jew"]},
                                  threshold=0.5).rows
    model, calls = _recorder()
    with pytest.raises(ValueError, match=_exact(
            "toxic_class: 2 is out of range for model 'm', which returns 2 classes")):
        term_test({"m": model}, TEXTS, LEX, toxic_class=2)
    assert len(calls) == 1


def test_a_model_whose_number_of_classes_changes_is_refused():
    seen = []

    def fickle(texts):
        seen.append(len(texts))
        return np.full((len(texts), 2 if len(seen) == 1 else 3), 0.25)

    with pytest.raises(ValueError, match=_exact(
            "model outputs: the number of classes changed between batches ([2, 3])")):
        term_test({"m": fickle}, TEXTS, LEX, batch_size=3)

    def wider_on_edits(texts):
        return np.full((len(texts), 3 if all(t.endswith(" muslim") for t in texts) else 2),
                       0.25)

    with pytest.raises(ValueError, match=_exact(
            "m: returned 3 classes on edited texts, 2 on the originals")):
        term_test({"m": wider_on_edits}, ["a", "b"], LEX)


# --- group verdicts ------------------------------------------------------------------------


def _row(model, group, n, k, direction="to_toxic", term="*"):
    lo, hi = wilson(k, n)
    return {"model": model, "group": group, "term": term, "direction": direction, "n": n,
            "flips": k, "flip_rate": k / n, "ci_low": lo, "ci_high": hi}


def test_group_verdicts_compare_each_group_with_the_control():
    rows = [
        _row("m", "control", 30, 3),  # the control first: it is skipped, not the end
        _row("x", "religion", 30, 30),  # model x has no control row: skipped
        _row("m", "religion", 30, 20),
        _row("m", "gender", 30, 3),  # as often as the control, 30 each: refutes
        _row("m", "race", 29, 3),
        _row("m", "religion", 30, 0, term="muslim"),  # a term row: ignored
        _row("m", "religion", 30, 0, direction="to_nontoxic"),
        _row("m", "control", 30, 0, direction="to_nontoxic"),
    ]
    assert group_verdicts(rows) == [
        {"model": "m", "group": "religion", "control": "control", "verdict": "supports"},
        {"model": "m", "group": "gender", "control": "control", "verdict": "refutes"},
        {"model": "m", "group": "race", "control": "control", "verdict": "inconclusive"},
    ]
    v = {x["group"]: x["verdict"] for x in group_verdicts(rows, min_n=31)}
    assert v == {"religion": "supports", "gender": "inconclusive", "race": "inconclusive"}
    v = {x["group"]: x["verdict"] for x in group_verdicts(rows, min_n=29)}
    assert v["race"] == "refutes"
    assert group_verdicts(rows, direction="to_nontoxic") == [
        {"model": "m", "group": "religion", "control": "control", "verdict": "refutes"}]
    renamed = [{**r, "group": "objects" if r["group"] == "control" else r["group"]}
               for r in rows]
    assert [x["control"] for x in group_verdicts(renamed, control="objects")] == ["objects"] * 3
    assert group_verdicts(renamed) == []


def test_group_verdicts_on_term_test_rows():
    res = _run()
    # m: religion 4 of 6 vs control 0 of 4, too few for either; kind never flips up: too few
    assert group_verdicts(res.rows) == [
        {"model": "m", "group": "religion", "control": "control", "verdict": "inconclusive"},
        {"model": "flat", "group": "religion", "control": "control",
         "verdict": "inconclusive"},
        {"model": "m", "group": "kind", "control": "control", "verdict": "inconclusive"},
        {"model": "flat", "group": "kind", "control": "control", "verdict": "inconclusive"},
    ]
    v = group_verdicts(res.rows, min_n=4)
    # flat: 0 of 15 and 0 of 5 against 0 of 10 refute; m's kind row has 2 texts, under 4
    assert [x["verdict"] for x in v] == ["inconclusive", "refutes", "inconclusive", "refutes"]
