"""The report of another study's crowd data: ``sparse-probe report --answers --study --out``.

Writes to the output directory

- ``report.json``: the study, the decision rule with its parameters, a summary, counts per
  verdict kind, agreement per question (Fleiss' kappa, Krippendorff's alpha with bootstrap
  intervals), worker quality, what the data lacks, dropped values;
- ``verdicts.csv`` (one row per item), ``classes.csv`` (one row per class),
  ``workers.csv`` (one row per worker);
- ``index.html`` with SVG figures under ``figures/``, or, with ``self_contained``, one HTML
  file with the figures inlined as ``data:`` URIs.

Every number shown in the HTML comes from the same tables as report.json, so the summary
cards agree with the tables. Per-class figures summarize (a histogram of the spurious share
per class and the top classes) instead of drawing one bar per class. Everything is vectorized
over the answers; worker text is escaped by Jinja2's autoescaping.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from analysis.agreement import crowdkit_alpha_of_counts
from analysis.rules import count_table, decide
from analysis.study import Study, StudyAnswers, read_study_answers
from sparse_probe.questions import CORE, NO_PATTERN, SPURIOUS
from sparse_probe.rundir import write_json, write_text

__all__ = ["StudyReportOptions", "agreement_table", "build_study_report", "class_table",
           "verdict_counts", "worker_table"]

_ORDER = [CORE, SPURIOUS, NO_PATTERN, "undecided", "pending"]
TOP_CLASSES = 25


@dataclass
class StudyReportOptions:
    """Options of :func:`build_study_report`.

    Attributes
    ----------
    drop_unknown : bool
        Drop undeclared answer values (counted in report.json) instead of stopping.
    self_contained : bool
        One HTML file, figures inlined as data URIs.
    n_boot : int
        Bootstrap resamples of the agreement intervals (items resampled).
    n_quotes : int
        Free-text answers shown per item.
    max_items_html : int
        Spurious items listed in the HTML (all are in verdicts.csv).
    seed : int
    """

    drop_unknown: bool = False
    self_contained: bool = False
    n_boot: int = 500
    n_quotes: int = 3
    max_items_html: int = 2000
    seed: int = 0


def _natural_order(values: pd.Series) -> np.ndarray:
    """Positions that sort ``values`` naturally: numbers numerically (``2`` before ``10``),
    then the others as strings."""
    num = pd.to_numeric(values, errors="coerce")
    return np.lexsort((values.astype(str).to_numpy(), num.fillna(0).to_numpy(),
                       num.isna().to_numpy()))


def verdict_counts(items: pd.DataFrame) -> list[dict[str, Any]]:
    """Items per verdict and, for spurious, per kind (tied kinds are their own row).

    Returns
    -------
    list of dict
        ``{"verdict", "kind", "n", "share"}`` in a fixed order; zero rows left out except
        the five verdicts.
    """
    n = max(len(items), 1)
    out = []
    for v in _ORDER:
        sel = items["verdict"] == v
        out.append({"verdict": v, "kind": None, "n": int(sel.sum()),
                    "share": float(sel.sum() / n)})
        if v == SPURIOUS and sel.any():
            kinds = items.loc[sel, "kind"].fillna("other").value_counts()
            for kind, c in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])):
                out.append({"verdict": v, "kind": str(kind), "n": int(c),
                            "share": float(c / n)})
    return out


def class_table(items: pd.DataFrame) -> pd.DataFrame:
    """One row per class: items, counts per verdict and spurious kind, spurious share, and
    the spurious weight share where the study has weights.

    Returns
    -------
    DataFrame, shape (n_classes, ...)
        In natural class order (numbers numerically).
    """
    g = items.groupby("class", sort=False)
    out = pd.DataFrame({"class_name": g["class_name"].first(), "n_items": g.size()})
    counts = pd.crosstab(items["class"], items["verdict"])
    for v in _ORDER:
        out[f"n_{v}"] = counts[v].reindex(out.index).fillna(0).astype(int) \
            if v in counts else 0
    sp = items[items["verdict"] == SPURIOUS]
    if len(sp):
        kinds = pd.crosstab(sp["class"], sp["kind"].fillna("other"))
        for k in kinds.columns:
            out[f"n_spurious_{k}"] = kinds[k].reindex(out.index).fillna(0).astype(int)
    decided = out[[f"n_{v}" for v in (CORE, SPURIOUS, NO_PATTERN)]].sum(axis=1)
    out["spurious_share"] = np.where(decided > 0, out[f"n_{SPURIOUS}"] / decided.where(
        decided > 0, 1), np.nan)
    if "weight" in items.columns and items["weight"].notna().any():
        w = items["weight"].abs()
        out["weight_total"] = w.groupby(items["class"]).sum().reindex(out.index)
        out["spurious_weight_share"] = (
            w.where(items["verdict"] == SPURIOUS, 0).groupby(items["class"]).sum()
            .reindex(out.index) / out["weight_total"].where(out["weight_total"] > 0))
    out = out.reset_index()
    return out.iloc[_natural_order(out["class"])].reset_index(drop=True)


def _boot_weights(n_items: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each item is drawn in each bootstrap resample, shape (n_boot, n_items)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_items, (n_boot, n_items)) + (np.arange(n_boot) * n_items)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n_items).reshape(n_boot, n_items)


def _kappa_alpha(table: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fleiss' kappa and Krippendorff's alpha (nominal) of item-weighted count tables.

    ``weights`` (n_sets, n_items) says how often each item of ``table`` (n_items,
    n_categories; items with at least two answers) counts in each set; a row of ones gives
    :func:`analysis.agreement.fleiss_kappa` and ``_alpha_from_counts`` of ``table``. Both
    statistics are sums over items, so every bootstrap resample is one matrix product.

    Returns
    -------
    kappa, alpha : arrays of shape (n_sets,), NaN where undefined
    """
    t = table.astype(float)
    m = t.sum(axis=1)
    sq = (t**2).sum(axis=1)
    w = weights.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Fleiss
        p_i = (sq - m) / (m * (m - 1))
        p_bar = (w @ p_i) / w.sum(axis=1)
        tot = w @ t
        p_j = tot / tot.sum(axis=1, keepdims=True)
        p_e = (p_j**2).sum(axis=1)
        kappa = np.where(np.isclose(p_e, 1.0), np.nan, (p_bar - p_e) / (1 - p_e))
        # Krippendorff: n_c = sum_u t_uc, trace(o) = sum_u (|t_u|^2 - m_u) / (m_u - 1)
        n_c = tot
        n = n_c.sum(axis=1)
        trace = w @ ((sq - m) / (m - 1))
        denom = n**2 - (n_c**2).sum(axis=1)
        alpha = np.where(denom > 0, 1 - (n - 1) * (n - trace) / denom, np.nan)
    return kappa, alpha


def _ci(vals: np.ndarray) -> list[float | None]:
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return [None, None]
    return [float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))]


def _fin(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _agreement(table: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    rated = table[table.sum(axis=1) >= 2]
    unanimous = float(((rated > 0).sum(axis=1) == 1).mean()) if len(rated) else None
    if len(rated):
        kappa, alpha = _kappa_alpha(rated, np.ones((1, len(rated))))
        kappa_ci = alpha_ci = [None, None]
        if len(rated) >= 2 and n_boot > 0:
            bk, ba = _kappa_alpha(rated, _boot_weights(len(rated), n_boot, seed))
            kappa_ci, alpha_ci = _ci(bk), _ci(ba)
    else:
        kappa = alpha = np.array([np.nan])
        kappa_ci = alpha_ci = [None, None]
    if len(rated) and np.isfinite(alpha[0]):
        # the headline value is crowd-kit's own metric; the vectorized form above (equal to
        # it, see tests/test_agreement.py) makes the 500 bootstrap resamples one product
        alpha = np.array([crowdkit_alpha_of_counts(rated)])
    return {"krippendorff_alpha": _fin(alpha[0]), "alpha_ci": alpha_ci,
            "fleiss_kappa": _fin(kappa[0]), "kappa_ci": kappa_ci,
            "unanimous": unanimous, "n_items": len(rated),
            "n_answers": int(table.sum())}


def agreement_table(answers: StudyAnswers, study: Study, n_boot: int = 500, seed: int = 0
                    ) -> list[dict[str, Any]]:
    """Agreement per question over its declared values, and for the deciding question also
    over meanings (core / spurious / no pattern), each with 95% bootstrap intervals.

    Returns
    -------
    list of dict
        ``{"question", "over", "krippendorff_alpha", "alpha_ci", "fleiss_kappa", "kappa_ci",
        "unanimous", "n_items", "n_answers"}``.
    """
    n_items = len(answers.items)
    item_idx = pd.Index(answers.items["item"]).get_indexer(answers.rows["item"])
    out = []
    for qid in study.question_columns:
        q = study.schema[qid]
        codes = answers.rows[qid].to_numpy()
        table = count_table(item_idx, codes, n_items, len(q.values))
        out.append({"question": qid, "over": "values", **_agreement(table, n_boot, seed)})
        if qid == study.rule.question:
            groups = [CORE, SPURIOUS, NO_PATTERN]
            m = np.array([groups.index(v.meaning) if v.meaning in groups else -1
                          for v in q.values])
            mcodes = np.where(codes >= 0, m[np.maximum(codes, 0)], -1)
            mtable = count_table(item_idx, mcodes, n_items, len(groups))
            mtable = mtable[:, mtable.sum(axis=0) > 0] if mtable.size else mtable
            out.append({"question": qid, "over": "meanings",
                        **_agreement(mtable, n_boot, seed)})
    return out


def worker_table(answers: StudyAnswers, items: pd.DataFrame, study: Study) -> pd.DataFrame:
    """Per worker: answers, abstentions and agreement of their answers' meanings with the
    items' verdicts (decided items only).

    Returns
    -------
    DataFrame, shape (n_workers, 4)
        ``worker, n_answers, n_abstain, agreement`` (NaN: no decided item answered).
    """
    q = study.schema[study.rule.question]
    codes = answers.rows[q.id].to_numpy()
    meaning = np.array([v.meaning for v in q.values] + [None], dtype=object)
    said = meaning[np.where(codes >= 0, codes, len(q.values))]
    verdict = items.set_index("item")["verdict"].reindex(answers.rows["item"]).to_numpy()
    decided = np.isin(verdict, [CORE, SPURIOUS, NO_PATTERN]) & (codes >= 0)
    df = pd.DataFrame({"worker": answers.rows["worker"].to_numpy(), "answered": codes >= 0,
                       "decided": decided, "agree": decided & (said == verdict)})
    g = df.groupby("worker", sort=True)
    out = pd.DataFrame({"n_answers": g["answered"].sum(),
                        "n_abstain": g.size() - g["answered"].sum()})
    dec = g["decided"].sum()
    out["agreement"] = g["agree"].sum() / dec.where(dec > 0)
    return out.reset_index()


def _quotes(answers: StudyAnswers, n: int) -> pd.Series:
    """Up to ``n`` distinct non-empty free-text answers per item (first given first)."""
    if "free_text" not in answers.rows.columns:
        return pd.Series(dtype=object)
    t = answers.rows[["item", "free_text"]]
    t = t[t["free_text"].fillna("").str.len() > 0]
    t = t[~t.assign(low=t["free_text"].str.lower()).duplicated(["item", "low"])]
    t = t.assign(rank=t.groupby("item", sort=False).cumcount())
    t = t[t["rank"] < n]
    wide = t.pivot(index="item", columns="rank", values="free_text")
    rows = wide.to_numpy(dtype=object)
    return pd.Series([[x for x in row if isinstance(x, str)] for row in rows],
                     index=wide.index, dtype=object)


def _lacks(answers: StudyAnswers, study: Study) -> dict[str, str]:
    cols = study.columns
    lacks = {}
    if "weight" not in cols or answers.items["weight"].isna().all():
        lacks["weight"] = ("The study gives no feature weights: per-class weight shares are "
                           "not computed (counts are shown instead).")
    if "class_name" not in cols:
        lacks["class_name"] = "The study gives no class names: classes are shown by id."
    if "visualization" not in cols:
        lacks["visualization"] = "The study gives no feature visualizations: none are shown."
    elif answers.items["visualization"].isna().any():
        n = int(answers.items["visualization"].isna().sum())
        lacks["visualization"] = f"{n} item(s) have no feature visualization."
    if "confidence" not in cols:
        lacks["confidence"] = "The study asked no confidence rating."
    if not study.free_text_columns:
        lacks["free_text"] = "The study collected no free-text answers."
    return lacks


# --------------------------------------------------------------------------- figures
def _svg_bars(labels: list[str], values: list[float], title: str, xlabel: str,
              color: str = "#4a7bb7", label_width: int = 220) -> str:
    """A horizontal bar chart as a standalone SVG document (labels XML-escaped).

    One bar per label; callers pass summaries (verdict kinds, histogram bins, top classes),
    never one bar per class.
    """
    bar, gap, top, width = 18, 6, 34, 360
    height = top + len(labels) * (bar + gap) + 34
    vmax = max([float(v) for v in values] + [1e-12])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + width + 70}" '
             f'height="{height}" font-family="sans-serif" font-size="12">',
             f'<text x="4" y="18" font-size="14" font-weight="bold">{xml_escape(title)}</text>']
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        y = top + i * (bar + gap)
        w = width * float(v) / vmax
        parts.append(f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end">'
                     f'{xml_escape(str(lab)[:34])}</text>'
                     f'<rect x="{label_width}" y="{y}" width="{w:.1f}" height="{bar}" '
                     f'fill="{color}"/><text x="{label_width + w + 4:.1f}" y="{y + 13}">'
                     f'{xml_escape(_fmt(v))}</text>')
    parts.append(f'<text x="{label_width}" y="{height - 10}" fill="#555">'
                 f'{xml_escape(xlabel)}</text></svg>')
    return "".join(parts)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.2f}"


def _figures(counts: list[dict[str, Any]], classes: pd.DataFrame) -> dict[str, str]:
    """The report's figures as SVG documents: items per verdict (kind), a histogram of the
    spurious share per class, and the top classes by spurious items."""
    figs: dict[str, str] = {}
    rows = [c for c in counts if c["n"] > 0 and not (c["verdict"] == SPURIOUS
                                                      and c["kind"] is None)]
    if rows:
        labels = [c["verdict"] if c["kind"] is None else f"spurious: {c['kind']}" for c in rows]
        figs["verdicts.svg"] = _svg_bars(labels, [c["n"] for c in rows], "Items per verdict",
                                         "items")
    share = classes["spurious_share"].dropna().to_numpy()
    if len(share):
        edges = np.linspace(0, 1, 11)
        hist = np.histogram(share, bins=edges)[0]
        labels = [f"{100 * a:.0f}-{100 * b:.0f}%" for a, b in pairwise(edges)]
        figs["class_share_hist.svg"] = _svg_bars(
            labels, list(hist), f"Classes by share of items judged spurious ({len(share)} "
            "classes)", "classes", color="#b75a4a", label_width=90)
        top = classes.sort_values([f"n_{SPURIOUS}", "n_items"], ascending=False,
                                  kind="stable").head(TOP_CLASSES)
        top = top[top[f"n_{SPURIOUS}"] > 0]
        if len(top):
            names = (top["class_name"].astype(str).str.slice(0, 24) + " ("
                     + top["class"].astype(str) + ")")
            figs["top_classes.svg"] = _svg_bars(
                list(names), list(top[f"n_{SPURIOUS}"]),
                f"Top {len(top)} classes by items judged spurious", "items judged spurious",
                color="#b75a4a")
    return figs


# --------------------------------------------------------------------------- the report
def build_study_report(answers_path: str | Path, study: Study, out: str | Path,
                       options: StudyReportOptions | None = None) -> dict[str, Any]:
    """Read a study's results CSV, apply its decision rule and write the report.

    Parameters
    ----------
    answers_path : path-like
        The results CSV.
    study : Study
        From :func:`analysis.study.load_study` (its rule possibly overridden).
    out : path-like
        Output directory (created).
    options : StudyReportOptions, optional

    Returns
    -------
    dict
        The content of report.json.

    Raises
    ------
    analysis.study.StudyError
        Unmapped columns, undeclared values (unless ``drop_unknown``), unreadable CSV.
    """
    opts = options or StudyReportOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    answers = read_study_answers(answers_path, study, drop_unknown=opts.drop_unknown)
    question = study.schema[study.rule.question]
    verdicts = decide(answers, study.rule, question)
    items = pd.concat([answers.items, verdicts], axis=1)
    quotes = _quotes(answers, opts.n_quotes)
    found = quotes.reindex(items["item"]).to_numpy() if len(quotes) else [None] * len(items)
    items["quotes"] = [list(q) if isinstance(q, list | np.ndarray) else [] for q in found]
    if "confidence" in answers.rows.columns:
        conf = answers.rows.groupby("item")["confidence"].mean()
        items["mean_confidence"] = conf.reindex(items["item"]).to_numpy()
    classes = class_table(items)
    workers = worker_table(answers, items, study)
    counts = verdict_counts(items)
    agreement = agreement_table(answers, study, opts.n_boot, opts.seed)
    lacks = _lacks(answers, study)
    n = {c["verdict"]: c["n"] for c in counts if c["kind"] is None}
    sp = items["verdict"] == SPURIOUS
    summary = {
        "n_answers": len(answers.rows), "n_items": len(items),
        "n_classes": len(classes), "n_workers": len(workers),
        **{f"n_{v}": n[v] for v in _ORDER},
        "n_plurality_ties": int(items["plurality_tie"].sum()),
        "n_plurality_ties_spurious": int((items["plurality_tie"] & sp).sum()),
        "n_rule_ties": int(items["tie"].sum()), "n_kind_ties": int(items["kind_tie"].sum()),
        "n_duplicates_dropped": answers.duplicates,
        "n_dropped_values": int(sum(sum(d.values()) for d in answers.dropped.values())),
    }
    report: dict[str, Any] = {
        "format": 1, "kind": "study", "title": study.title, "study": study.path,
        "answers": str(answers_path), "rule": study.rule.to_dict(),
        "question": {"id": question.id, "values": [
            {"value": v.value, "meaning": v.meaning, "spurious_kind": v.spurious_kind}
            for v in question.values]},
        "summary": summary, "verdict_counts": counts, "agreement": agreement,
        "abstentions": answers.abstentions, "dropped_values": answers.dropped,
        "workers": {"n": len(workers),
                    "median_answers": float(workers["n_answers"].median()) if len(workers)
                    else None,
                    "median_agreement": _fin(float(workers["agreement"].median()))
                    if len(workers) else None},
        "lacks": lacks,
        "files": {"verdicts": "verdicts.csv", "classes": "classes.csv",
                  "workers": "workers.csv", "html": "index.html"},
    }
    csv_items = items.drop(columns=["quotes"]).assign(
        quotes=items["quotes"].str.join(" || "))
    write_text(out / "verdicts.csv", csv_items.to_csv(index=False))
    write_text(out / "classes.csv", classes.to_csv(index=False))
    write_text(out / "workers.csv", workers.to_csv(index=False))
    figs = _figures(counts, classes)
    if opts.self_contained:
        images = {k: "data:image/svg+xml;base64," + base64.b64encode(v.encode()).decode("ascii")
                  for k, v in figs.items()}
    else:
        for k, v in figs.items():
            write_text(out / "figures" / k, v)
        images = {k: f"figures/{k}" for k in figs}
    report["figures"] = sorted(figs)
    report["self_contained"] = bool(opts.self_contained)
    write_json(out / "report.json", report)
    shown = items[sp].sort_values("n_spurious", ascending=False, kind="stable")
    html = _render(report, classes, shown.head(opts.max_items_html), int(sp.sum()), images,
                   workers)
    write_text(out / "index.html", html)
    return report


def _render(report: dict[str, Any], classes: pd.DataFrame, spurious: pd.DataFrame,
            n_spurious: int, images: dict[str, str], workers: pd.DataFrame) -> str:
    env = Environment(loader=PackageLoader("analysis", "templates"),
                      autoescape=select_autoescape(["html"]))
    kind_cols = [c for c in classes.columns if c.startswith("n_spurious_")]
    low = workers[workers["n_answers"] >= 10].sort_values("agreement").head(20)
    return env.get_template("study_report.html").render(
        r=report, s=report["summary"], classes=classes.to_dict("records"),
        kind_cols=kind_cols, has_weight="spurious_weight_share" in classes.columns,
        spurious=spurious.to_dict("records"), n_spurious=n_spurious, images=images,
        low_workers=low.to_dict("records"), isnan=lambda x: x is None or x != x)
