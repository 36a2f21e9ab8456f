"""Build the audit report of a run: ``report/index.html``, ``report.json``, ``features.csv``,
``figures/*.png`` (see docs/contracts.md).

The HTML is self-contained: figures and the HITs' evidence images are copied under the report
directory and referenced relatively, CSS is inline, there is no JavaScript and nothing is loaded
from the network. Every string that came from a worker goes through Jinja2's autoescaping.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from analysis import figures
from analysis.aggregate import METHODS, aggregate, worker_skills
from analysis.agreement import agreement_summary
from analysis.ingest import ANSWER_COLUMNS, IngestError, load_answers, load_manifest
from analysis.model_comparison import model_comparison
from analysis.quality import QCConfig, quality_control
from analysis.verdicts import compute_verdicts
from sparse_probe.quality import name_anonymous
from sparse_probe.questions import (
    CORE,
    NO_PATTERN,
    SPURIOUS,
    SPURIOUS_KINDS,
    schema_for_tasks,
)
from sparse_probe.rundir import (
    RunDirError,
    atomic_path,
    check_same_run,
    read_json,
    read_run_record,
    write_text,
)

__all__ = ["Judged", "ReportOptions", "answer_source", "build_report", "class_weight_shares",
           "identity_example_share", "judge_answers", "probe_arrays", "undecided_hit_keys"]

logger = logging.getLogger(__name__)
FEATURE_COLUMNS = ["hit_key", "class", "class_name", "feature", "weight", "rank", "layer",
                   "verdict", "kind", "votes", "posterior", "truth"]
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}


@dataclass
class ReportOptions:
    """Options of :func:`build_report`.

    Attributes
    ----------
    method : str
        crowd-kit aggregator (one of :data:`analysis.aggregate.METHODS`).
    qc : QCConfig
        Worker exclusion rules.
    min_posterior : float
        Below this posterior a label leaves the verdict ``undecided``.
    n_boot : int
        Bootstrap resamples of the agreement intervals.
    seed : int
    title : str, optional
    answers : path, optional
        Answers to use instead of ``run/answers/answers.parquet`` (parquet, long CSV or MTurk
        batch-results CSV).
    """

    method: str = "DawidSkene"
    qc: QCConfig = field(default_factory=QCConfig)
    min_posterior: float = 0.6
    n_boot: int = 500
    seed: int = 0
    title: str | None = None
    answers: str | Path | None = None


def _atomic_write(path: Path, text: str) -> None:
    write_text(path, text)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating | float):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if obj is pd.NA or obj is pd.NaT:
        return None
    return obj


def probe_arrays(run: Path) -> dict:
    """What the report uses of ``probe/``: ``{"json": probe.json, "path": path.npz arrays}``.

    Either key is absent when its file is (a study without a fitted probe); probe.json is
    read by the run-directory reader, so a malformed one stops with its file named.
    """
    out: dict = {}
    pj = run / "probe" / "probe.json"
    if pj.exists():
        try:
            out["json"] = read_json(pj, what="probe.json from `sparse-probe fit`")
        except RunDirError as exc:
            raise IngestError(str(exc)) from None
    pz = run / "probe" / "path.npz"
    if pz.exists():
        with np.load(pz) as z:
            out["path"] = {k: z[k] for k in z.files}
    return out


def _selected_weights(probe: dict) -> pd.DataFrame | None:
    """COO weights (class, feature, weight) of the selected path point."""
    path, pj = probe.get("path"), probe.get("json", {})
    idx = pj.get("selection", {}).get("index")
    if path is None or idx is None or "w_ptr" not in path:
        return None
    a, b = int(path["w_ptr"][idx]), int(path["w_ptr"][idx + 1])
    return pd.DataFrame({"class": path["w_row"][a:b].astype(int),
                         "feature": path["w_col"][a:b].astype(int),
                         "weight": path["w_val"][a:b].astype(float)})


def class_weight_shares(verdicts: pd.DataFrame, weights: pd.DataFrame | None,
                        classes: list[str]) -> pd.DataFrame:
    """Share of each class's weight mass per verdict category (sparse layer).

    The mass of a class is ``sum_j |W[c, j]|`` over its non-zero weights. Weights act on
    standardized features (mean 0), so a negative weight is evidence *for* the class through
    low activations (the HIT then shows the lowest-activating examples); counting only
    positive weights would miss such features, e.g. every feature of one class of a binary
    probe, whose weights are the negatives of the other class's.

    Parameters
    ----------
    verdicts : DataFrame
        :func:`compute_verdicts` output.
    weights : DataFrame, optional
        ``class, feature, weight`` of the selected sparse head; default: the verdict rows'
        own weights.
    classes : list of str

    Returns
    -------
    DataFrame indexed by class name
        Columns ``core``, ``spurious:<kind>``..., ``no_pattern``, ``undecided``, ``pending``,
        ``unaudited``; each row sums to 1 (or is all zero without weights).
    """
    v = verdicts[verdicts["layer"] == "sparse"]
    cat = {(int(c), f): (vd if vd != "spurious" else f"spurious:{k}")
           for c, f, vd, k in zip(v["class"], v["feature"], v["verdict"], v["kind"], strict=True)}
    if weights is None:
        weights = v[["class", "feature", "weight"]]
    cols = [CORE, *(f"{SPURIOUS}:{k}" for k in SPURIOUS_KINDS), NO_PATTERN, "undecided",
            "pending", "unaudited"]
    rows = {}
    for ci, name in enumerate(classes):
        w = weights[(weights["class"] == ci) & (weights["weight"] != 0)]
        total = float(w["weight"].abs().sum())
        row = dict.fromkeys(cols, 0.0)
        for f, wt in zip(w["feature"], w["weight"], strict=True):
            row[cat.get((ci, f), "unaudited")] += abs(float(wt)) / total if total > 0 else 0.0
        rows[name] = row
    df = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    return df.loc[:, (df.sum(axis=0) > 0) | df.columns.isin([CORE])]


def _copy_assets(verdicts: pd.DataFrame, tasks_dir: Path, out: Path) -> list[list[dict]]:
    """Copy each HIT's evidence files under ``out/assets``; return per row [{name, src, image}]."""
    root = tasks_dir.resolve()
    result = []
    for assets in verdicts["assets"]:
        items = []
        for name, rel in (assets or {}).items():
            src = (tasks_dir / str(rel)).resolve()
            if not src.is_relative_to(root) or not src.is_file():
                logger.warning("asset %s (%s) missing or outside %s; skipped", name, rel, root)
                continue
            rel_in = src.relative_to(root)
            dest = out / "assets" / rel_in.relative_to("assets") if rel_in.parts[0] == "assets" \
                else out / "assets" / rel_in
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists() or dest.stat().st_mtime < src.stat().st_mtime:
                shutil.copy2(src, dest)
            items.append({"name": str(name), "src": dest.relative_to(out).as_posix(),
                          "image": src.suffix.lower() in IMAGE_EXT})
        result.append(items)
    return result


def _items_from_probe(probe: dict, kind: str) -> pd.DataFrame:
    top = probe.get("json", {}).get("top_features", {})
    rows = []
    for layer in ("sparse", "dense"):
        for t in top.get(layer, []):
            rows.append({"hit_key": f"probe-c{t['class']:02d}-f{t['feature']:04d}-{layer}",
                         "kind": kind, "layer": layer, "class": t["class"],
                         "class_name": t.get("class_name", str(t["class"])),
                         "feature": t["feature"], "weight": t["weight"], "rank": t["rank"],
                         "assets": {}, "is_gold": False, "gold": None, "attention": None,
                         "evidence": None, "truth": None})
    return pd.DataFrame(rows)


def identity_example_share(run: Path, meta: dict, probe_json: dict, k: int = 20,
                           threshold: float = 0.8,
                           lexicon: dict[str, list[str]] | None = None) -> dict | None:
    """Share of top features that are identity-term features, per layer (dense vs sparse).

    For each top feature of a layer (probe.json ``top_features``), take the ``k`` examples of the
    validation split (else test) that drive it toward its class (highest values for a positive
    weight, lowest for a negative one); the feature is an *identity-term feature* when at least
    ``threshold`` of them mention a lexicon term (whole tokens).

    Returns
    -------
    dict or None
        ``{"dense": share, "sparse": share, "base_rate": share of all texts with a term,
        "threshold": threshold, "k": k}``; None when the run is not a text run or its pieces
        are missing.
    """
    if meta.get("kind") != "text" or not probe_json.get("top_features"):
        return None
    try:
        from sparse_probe.datasets.toxicity import IDENTITY_TERMS, tokenize
        from sparse_probe.extract import load_split
    except ImportError:  # pragma: no cover - sparse_probe without the text pieces
        return None
    lexicon = lexicon or IDENTITY_TERMS
    split = next((s for s in ("val", "test") if (run / "features" / f"{s}.npy").exists()), None)
    if split is None:
        return None
    try:
        meta = {**meta, "_dir": str(run / "features")}
        data = load_split(meta, split)
        texts = data[list(range(len(data)))]
        X = np.load(run / "features" / f"{split}.npy", mmap_mode="r")
    except (OSError, KeyError, ValueError) as exc:
        logger.warning("identity-term share skipped: %s", exc)
        return None
    terms = [" " + " ".join(tokenize(t)) + " " for ts in lexicon.values() for t in ts]
    padded = [" " + " ".join(tokenize(str(t))) + " " for t in texts]
    has = np.array([any(term in p for term in terms) for p in padded])
    out: dict[str, float] = {"base_rate": float(has.mean()), "threshold": threshold, "k": k}
    for layer in ("dense", "sparse"):
        tops = probe_json["top_features"].get(layer) or []
        shares = []
        for t in tops:
            col = np.asarray(X[:, int(t["feature"])])
            order = np.argsort(-col if t["weight"] >= 0 else col)[:k]
            shares.append(float(has[order].mean()) >= threshold)
        if shares:
            out[layer] = float(np.mean(shares))
    return out


def _identity_shares(verdicts: pd.DataFrame) -> dict[str, float]:
    v = verdicts[verdicts["verdict"].isin(
        [CORE, SPURIOUS, NO_PATTERN])]
    out = {}
    for layer in ("dense", "sparse"):
        lv = v[v["layer"] == layer]
        if len(lv):
            out[layer] = float(((lv["verdict"] == SPURIOUS) & (lv["kind"] == "identity")).mean())
    return out


#: worker-id prefix of a blind simulated crowd (tasks.simulate: workers without masks)
BLIND_PREFIX = "SIMBLIND"
_SOURCE_NOTES = {
    "simulated-blind": ("Answers come from a BLIND simulated crowd: the HITs have no "
                        "ground-truth masks, so the simulated workers could not see the "
                        "evidence; their answers are guesses, not judgements, and no verdict "
                        "below says anything about the model."),
    "simulated": ("Answers come from a simulated crowd (reads ground-truth masks): "
                  "the verdicts test the pipeline against the planted cues, they are not "
                  "people's judgements."),
    "mixed": ("Some answers come from a simulated crowd (worker ids starting with SIM); "
              "see the workers table."),
}


def answer_source(tasks_dir: Path, answers: pd.DataFrame) -> dict:
    """Where the answers come from: people, a simulated crowd, or a blind simulated crowd.

    Read from ``tasks/simulation.json`` (written by ``tasks simulate``: ``source``,
    ``worker_prefix``) and the workers' ids (a blind simulated crowd's start with
    ``SIMBLIND``).

    Returns
    -------
    dict
        ``{"kind": "people" | "simulated" | "simulated-blind" | "mixed" | "none",
        "n_workers": int, "n_simulated": int, "n_blind": int, "note": str | None}``.
    """
    rec_path = tasks_dir / "simulation.json"
    rec: dict = {}
    if rec_path.is_file():
        try:
            rec = read_json(rec_path, what="simulation record of `tasks simulate`")
        except RunDirError as exc:
            raise IngestError(str(exc)) from None
    workers = pd.Series(answers["worker_id"].dropna().astype(str).unique()) \
        if len(answers) else pd.Series(dtype=str)
    prefixes = {"SIM", BLIND_PREFIX, str(rec.get("worker_prefix") or "SIM")}
    simulated = workers.map(lambda w: any(w.startswith(p) for p in prefixes)) \
        if len(workers) else pd.Series(dtype=bool)
    blind = workers.str.startswith(BLIND_PREFIX) if len(workers) else pd.Series(dtype=bool)
    if rec.get("source") == "simulated-blind" and len(workers):
        blind = blind | workers.str.startswith(str(rec.get("worker_prefix") or BLIND_PREFIX))
    n, n_sim, n_blind = len(workers), int(simulated.sum()), int(blind.sum())
    if n == 0:
        kind = "none"
    elif n_blind:
        kind = "simulated-blind"
    elif n_sim == n:
        kind = "simulated"
    elif n_sim:
        kind = "mixed"
    else:
        kind = "people"
    note = _SOURCE_NOTES.get(kind)
    if kind == "simulated-blind" and n_blind < n:
        note = f"{n_blind} of {n} workers are a blind simulated crowd. " + note
    return {"kind": kind, "n_workers": n, "n_simulated": n_sim, "n_blind": n_blind,
            "note": note}


def _check_answers_match_tasks(answers_dir: Path, tasks_dir: Path) -> None:
    """Refuse answers collected for other HITs than the run's (when both record it)."""
    answers_rec, tasks_rec = read_run_record(answers_dir), read_run_record(tasks_dir)
    if answers_rec is None or tasks_rec is None:
        return
    check_same_run(answers_rec.get("inputs", {}).get("tasks"), tasks_rec.get("fingerprint"),
                   expected_from=str(answers_dir / "answers.parquet"),
                   actual_from=str(tasks_dir))


@dataclass
class Judged:
    """The answers of a run and the verdicts they give (:func:`judge_answers`)."""

    answers: pd.DataFrame
    source: dict
    schema: Any
    qc: Any
    kept: pd.DataFrame
    agg: Any
    skills: pd.DataFrame | None
    n_answered: pd.Series | None
    verdicts: pd.DataFrame


def judge_answers(run: Path, manifest: pd.DataFrame, options: ReportOptions) -> Judged:
    """Quality control, aggregation and verdicts of a run's answers (what the report shows).

    Parameters
    ----------
    run : Path
        Run directory (``answers/answers.parquet``, ``tasks/``; answers may be missing).
    manifest : DataFrame
        One row per HIT (:func:`analysis.ingest.load_manifest`).
    options : ReportOptions

    Returns
    -------
    Judged
        ``verdicts`` has one row per audited HIT (:func:`compute_verdicts`) plus
        ``verdict_mv``, the verdict under majority vote.
    """
    answers_path = Path(options.answers) if options.answers else run / "answers" / "answers.parquet"
    _check_answers_match_tasks(answers_path.parent, run / "tasks")
    if answers_path.exists():
        answers = load_answers(answers_path)
    else:
        answers = pd.DataFrame(columns=ANSWER_COLUMNS)
    known = answers["hit_key"].isin(set(manifest["hit_key"]))
    if not known.all():
        logger.warning("%d answer rows name HITs missing from the manifest; ignored",
                       int((~known).sum()))
    # each assignment without a worker id is a worker of its own, for every count below
    answers = name_anonymous(answers[known])
    source = answer_source(run / "tasks", answers)
    if source["note"]:
        logger.warning("%s", source["note"])

    schema = schema_for_tasks(run / "tasks")  # the questions the HITs asked
    qc = quality_control(answers, manifest, options.qc, schema)
    kept = qc.kept
    agg = aggregate(kept, method=options.method, seed=options.seed, schema=schema)
    agg_mv = aggregate(kept, method="MajorityVote", schema=schema) \
        if options.method != "MajorityVote" else agg
    skills = worker_skills(kept, agg, schema=schema) if len(kept) else None
    # workers who answered each HIT before quality control: "pending" only without any
    n_answered = answers.groupby("hit_key")["worker_id"].nunique() if len(answers) else None
    verdicts = compute_verdicts(manifest, agg, kept, skills, options.min_posterior,
                                schema=schema, n_answered=n_answered)
    mv_verdicts = compute_verdicts(manifest, agg_mv, kept, None, options.min_posterior,
                                   schema=schema, n_answered=n_answered)
    verdicts["verdict_mv"] = mv_verdicts["verdict"].values
    return Judged(answers, source, schema, qc, kept, agg, skills, n_answered, verdicts)


def undecided_hit_keys(run: str | Path, options: ReportOptions | None = None) -> list[str]:
    """HIT keys of a run whose verdict is ``undecided`` (votes split, or below the
    posterior threshold): the HITs more assignments would settle (``sparse-probe tasks
    extend``). Gold HITs are never among them."""
    run = Path(run)
    options = options or ReportOptions()
    manifest = load_manifest(run / "tasks" / "manifest.jsonl")
    v = judge_answers(run, manifest, options).verdicts
    return [str(k) for k in v.loc[v["verdict"] == "undecided", "hit_key"]]


def build_report(run: str | Path, out: str | Path | None = None,
                 options: ReportOptions | None = None) -> dict:
    """Write the report of a run directory.

    Parameters
    ----------
    run : path
        Run directory (``tasks/manifest.jsonl``, ``answers/answers.parquet``, ``probe/``,
        ``features/meta.json``; answers may be missing or partial).
    out : path, optional
        Output directory, default ``run/report``.
    options : ReportOptions, optional

    Returns
    -------
    dict
        The content of ``report.json``.
    """
    run = Path(run)
    out = Path(out) if out is not None else run / "report"
    options = options or ReportOptions()
    if options.method not in METHODS:
        raise ValueError(f"method: unknown aggregation method {options.method!r}; "
                         f"expected one of {METHODS}")
    if not run.is_dir():
        raise IngestError(f"{run}: run directory not found")
    out.mkdir(parents=True, exist_ok=True)
    meta_path = run / "features" / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    probe = probe_arrays(run)
    pj = probe.get("json", {})
    classes = list(pj.get("classes") or meta.get("classes") or [])
    data_kind = meta.get("kind", "image")

    manifest_path = run / "tasks" / "manifest.jsonl"
    if manifest_path.exists():
        manifest = load_manifest(manifest_path)
    else:
        manifest = _items_from_probe(probe, data_kind)
        if manifest.empty:
            raise IngestError(f"{run}: neither tasks/manifest.jsonl nor probe/probe.json "
                              "top_features to report on")
    if not classes:
        classes = [str(n) for _, n in sorted(zip(manifest["class"], manifest["class_name"],
                                                 strict=True))]
        classes = list(dict.fromkeys(classes))
    judged = judge_answers(run, manifest, options)
    answers, source, schema, qc = judged.answers, judged.source, judged.schema, judged.qc
    kept, agg, skills, n_answered = judged.kept, judged.agg, judged.skills, judged.n_answered
    verdicts = judged.verdicts
    # gold HITs are never verdicts; shown apart, as what the crowd said on known answers
    gold_rows = compute_verdicts(manifest, agg, kept, skills, options.min_posterior,
                                 schema=schema, include_gold=True, n_answered=n_answered)
    gold_rows = gold_rows[gold_rows["is_gold"]]
    agreement = agreement_summary(kept, n_boot=options.n_boot, seed=options.seed,
                                  schema=schema) if len(kept) else {}
    verdicts["evidence_files"] = _copy_assets(verdicts, run / "tasks", out)

    # figures
    fig_dir = out / "figures"
    figs: dict[str, str] = {}
    path = probe.get("path")
    sel = pj.get("selection", {}).get("index")
    if path is not None and "nnz_per_class" in path:
        figs["accuracy_path"] = figures.fig_accuracy_path(
            path["nnz_per_class"].mean(axis=1), path["train_acc"], path["val_acc"], sel,
            fig_dir / "accuracy_path.png",
            {k: v.get("test") for k, v in pj.get("accuracy", {}).items()})
    weights = _selected_weights(probe)
    shares = class_weight_shares(verdicts, weights, classes) if classes else pd.DataFrame()
    if len(shares):
        figs["spurious_share"] = figures.fig_spurious_share(shares, fig_dir / "spurious_share.png")
    real = verdicts  # audited features only: compute_verdicts leaves gold HITs out
    figs["verdicts"] = figures.fig_verdict_counts(real, fig_dir / "verdicts.png")
    if agreement and any(v.get("fleiss_kappa") is not None for v in agreement.values()):
        figs["agreement"] = figures.fig_agreement(agreement, fig_dir / "agreement.png")
    identity = _identity_shares(verdicts) if data_kind == "text" else {}
    identity_examples = identity_example_share(run, meta, pj)
    if identity or identity_examples:
        figs["identity_share"] = figures.fig_identity_share(identity, identity_examples,
                                                           fig_dir / "identity_share.png")
    comparison = model_comparison(run, meta, pj)
    cf_rows, cf_json = _load_counterfactual(out)
    if cf_rows is not None and len(cf_rows):
        figs["counterfactual"] = figures.fig_counterfactual(cf_rows,
                                                           fig_dir / "counterfactual.png")
    figs_rel = {k: Path(v).relative_to(out).as_posix() for k, v in figs.items()}

    # tables for programs
    sparse = real[real["layer"] == "sparse"]
    spurious_cols = [c for c in shares.columns if c.startswith("spurious")] if len(shares) else []
    share_sp = shares[spurious_cols].sum(axis=1) if spurious_cols else pd.Series(
        0.0, index=shares.index)
    by_class = sorted(((str(c), float(s)) for c, s in share_sp.items()), key=lambda t: -t[1])
    counts = sparse["verdict"].value_counts().to_dict()
    summary = {
        "answer_source": source,
        "run": str(run), "dataset": meta.get("dataset", {}).get("name"),
        "model": meta.get("model", {}).get("name"), "layer": meta.get("layer"),
        "kind": data_kind, "classes": classes,
        "n_classes_audited": int(sparse["class"].nunique()),
        "n_features_audited": len(sparse),
        "verdict_counts": {k: int(v) for k, v in counts.items()},
        "n_spurious": int(counts.get("spurious", 0)),
        "spurious_by_kind": {str(k): int(v) for k, v in
                             sparse.loc[sparse["verdict"] == "spurious", "kind"]
                             .value_counts().items()},
        "spurious_weight_share": dict(by_class),
        "most_spurious_classes": [c for c, s in by_class if s > 0][:5],
        "n_answers": int(answers["assignment_id"].nunique()) if len(answers) else 0,
        "n_workers": len(qc.workers),
        "n_workers_kept": int((~qc.workers["excluded"]).sum()) if len(qc.workers) else 0,
        "n_pending": int((real["verdict"] == "pending").sum()),
        "n_undecided": int((real["verdict"] == "undecided").sum()),
        "n_workers_review": int(qc.workers["review"].sum()) if len(qc.workers) else 0,
        "method": options.method,
        "truth_accuracy": (float(real["truth_match"].dropna().astype(float).mean())
                           if real["truth_match"].notna().any() else None),
        "identity_share": identity or None,
        "identity_example_share": identity_examples,
    }
    rows = []
    for r in verdicts.to_dict(orient="records"):
        rows.append({
            "hit_key": r["hit_key"], "class": int(r["class"]),
            "class_name": r["class_name"], "feature": r["feature"], "weight": r["weight"],
            "rank": r["rank"], "layer": r["layer"], "verdict": r["verdict"], "kind": r["kind"],
            "votes": {"shared": r["votes_shared"], "pattern": r["votes_pattern"]},
            "posterior": {"shared": r["shared_posterior"], "pattern": r["pattern_posterior"],
                          "verdict": r["confidence"]},
            "truth": r["truth"], "is_gold": r["is_gold"],
            "verdict_majority_vote": r["verdict_mv"], "n_workers": r["n_workers"],
            # how many labels each posterior rests on (n=1: one vote, whatever the posterior)
            "n_votes": {"shared": r["n_shared"], "pattern": r["n_pattern"]},
            "n_answered": r["n_answered"], "reason": r["reason"],
            "self_confidence": r["self_confidence"], "truth_match": r["truth_match"],
            "quotes": list(r["quotes"]),
        })
    report = {
        "format": 1, "summary": summary, "features": rows,
        "options": {"method": options.method, "min_posterior": options.min_posterior,
                    "n_boot": options.n_boot, "seed": options.seed},
        "qc": {"config": options.qc.to_dict(),
               "workers": qc.workers.to_dict(orient="records"),
               "excluded": qc.excluded.to_dict(orient="records")},
        "agreement": agreement,
        "probe": {k: pj.get(k) for k in ("selection", "accuracy", "features_per_class", "fit")},
        # original (the network's own last layer) vs dense path end vs sparse head
        "model_comparison": comparison,
        "figures": figs_rel,
        "counterfactual": cf_json,
    }
    report = _jsonable(report)
    _atomic_write(out / "report.json", json.dumps(report, indent=1, ensure_ascii=False))
    flat = pd.DataFrame(rows)
    if len(flat):
        flat["votes"] = [json.dumps(_jsonable(v)) for v in flat["votes"]]
        flat["posterior"] = [v["verdict"] for v in flat["posterior"]]
        flat["quotes"] = [json.dumps(q, ensure_ascii=False) for q in flat["quotes"]]
        flat["n_votes"] = [json.dumps(_jsonable(v)) for v in flat["n_votes"]]
    flat = flat.reindex(columns=[*FEATURE_COLUMNS, "is_gold", "verdict_majority_vote",
                                 "n_workers", "n_votes", "n_answered", "reason",
                                 "self_confidence", "truth_match", "quotes"])
    with atomic_path(out / "features.csv") as tmp:
        flat.to_csv(tmp, index=False)

    html = _render(report, verdicts, shares, qc, figs_rel, cf_rows, meta, pj, options,
                   gold_rows)
    _atomic_write(out / "index.html", html)
    logger.info("report written to %s", out)
    return report


def _load_counterfactual(out: Path) -> tuple[pd.DataFrame | None, dict | None]:
    csv = out / "counterfactual.csv"
    if not csv.exists():
        return None, None
    rows = pd.read_csv(csv)
    js = out / "counterfactual.json"
    summary = json.loads(js.read_text(encoding="utf-8")) if js.exists() else {}
    summary.setdefault("rows", len(rows))
    return rows, summary


def _clean_record(rec: dict) -> dict:
    """NaN -> None, so templates can test values plainly."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in rec.items()}


def _render(report: dict, verdicts: pd.DataFrame, shares: pd.DataFrame, qc: Any,
            figs: dict[str, str], cf_rows: pd.DataFrame | None, meta: dict, pj: dict,
            options: ReportOptions, gold_rows: pd.DataFrame) -> str:
    env = Environment(loader=PackageLoader("analysis", "templates"),
                      autoescape=select_autoescape(["html"], default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = lambda v, d=2: "–" if v is None or (
        isinstance(v, float) and not math.isfinite(v)) else (
        f"{v:.{d}f}" if isinstance(v, float | np.floating) else str(v))
    # counterfactual files name the network's own last layer "dense": it is the original model
    env.filters["model_label"] = lambda m: "original" if m == "dense" else m
    env.filters["pct"] = lambda v: "–" if v is None or (
        isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.0f}%"
    per_class = []
    classes = report["summary"]["classes"]
    # the classes the verdicts name, by their own ids and names (ids need not be 0..K-1)
    for ci in sorted(verdicts["class"].unique()):
        rows = verdicts[verdicts["class"] == ci].sort_values(
            ["layer", "rank"], ascending=[False, True])
        known = 0 <= ci < len(classes)
        own = rows["class_name"].iloc[0] if "class_name" in rows else None
        name = str(own) if isinstance(own, str) and own else (
            classes[ci] if known else str(ci))
        key = classes[ci] if known else name
        share = shares.loc[key].to_dict() if key in shares.index else {}
        class_assets = list({e["src"]: e for files in rows["evidence_files"] for e in files
                             if e["name"].startswith("class_")}.values())
        per_class.append({"assets": class_assets,"index": ci, "name": name, "anchor": f"class-{ci}",
                          "rows": [_clean_record(r) for r in rows.to_dict(orient="records")],
                          "share": share,
                          # None: the class has no weights (say so rather than "0%")
                          "spurious_share": sum(v for k, v in share.items()
                                                if k.startswith("spurious"))
                          if sum(share.values()) > 0 else None})
    gold = gold_rows.to_dict(orient="records")
    template = env.get_template("report.html")
    return template.render(
        title=options.title or f"Sparse-probe audit: {meta.get('dataset', {}).get('name', '')}",
        s=report["summary"], per_class=per_class, figs=figs, agreement=report["agreement"],
        workers=qc.workers.to_dict(orient="records"), qc_config=options.qc.to_dict(),
        probe=pj, meta=meta, options=options, gold=gold,
        cf=None if cf_rows is None else cf_rows.to_dict(orient="records"),
        cf_summary=report.get("counterfactual"), comparison=report.get("model_comparison"),
    )
