"""Small hand-built fixtures for the analysis tests: a manifest, simulated crowd answers, a probe
and a whole run directory, plus MTurk-format exports of the same answers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd

QFA_NS = ("http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/"
          "QuestionFormAnswers.xsd")
BATCH_HEADER = [
    "HITId", "HITTypeId", "Title", "Description", "Keywords", "Reward", "CreationTime",
    "MaxAssignments", "RequesterAnnotation", "AssignmentDurationInSeconds",
    "AutoApprovalDelayInSeconds", "Expiration", "NumberOfSimilarHITs", "LifetimeInSeconds",
    "AssignmentId", "WorkerId", "AssignmentStatus", "AcceptTime", "SubmitTime",
    "AutoApprovalTime", "ApprovalTime", "RejectionTime", "RequesterFeedback",
    "WorkTimeInSeconds", "LifetimeApprovalRate", "Last30DaysApprovalRate",
    "Last7DaysApprovalRate",
]
CLASSES = ["circle", "square", "triangle"]
# (class, feature, truth): the planted ground truth of the fixture
FEATURES = [
    (0, 11, "core"), (0, 12, "spurious:mark"), (0, 13, "core"),
    (1, 21, "core"), (1, 22, "spurious:background"), (1, 23, "none"),
    (2, 31, "core"), (2, 32, "core"), (2, 33, "spurious:mark"),
]
# gold HITs: features of the probe whose answer is known (as the builder makes them)
GOLD = [(0, 90, {"shared": "yes", "pattern": "mark"}), (1, 91, {"shared": "no", "pattern": None})]
#: The audited features' truths: gold HITs are known-answer items outside the audit and get no
#: verdict (analysis.verdicts), so they are not among them.
ALL_TRUTH = list(FEATURES)


def truth_answer(truth: str) -> tuple[str, str]:
    """The (shared, pattern) a perfect worker gives for a truth label."""
    if truth == "core":
        return "yes", "object"
    if truth == "none":
        return "no", ""
    return "yes", truth.split(":")[1]


def make_manifest(kind: str = "image", features=FEATURES, gold=GOLD, layer: str = "sparse"):
    """Manifest rows (dicts) per docs/contracts.md."""
    rows = []
    rank = {}
    for c, f, truth in features:
        rank[c] = rank.get(c, 0) + 1
        rows.append({
            "hit_key": f"img-c{c:02d}-f{f:04d}-{layer}", "kind": kind, "layer": layer,
            "class": c, "class_name": CLASSES[c], "feature": f,
            "weight": round(1.5 / rank[c], 3), "rank": rank[c], "direction": "highest",
            "html": f"hits/img-c{c:02d}-f{f:04d}-{layer}.html",
            "assets": {"examples": f"assets/c{c}_f{f}.png"}, "example_ids": ["0", "1"],
            "is_gold": False, "gold": None,
            "attention": {"field": "attention", "expected": "blue"},
            "evidence": None, "truth": truth,
        })
    for c, f, g in gold:
        rank[c] = rank.get(c, 0) + 1
        rows.append({
            "hit_key": f"img-c{c:02d}-f{f:04d}-{layer}", "kind": kind, "layer": layer,
            "class": c, "class_name": CLASSES[c], "feature": f, "weight": 0.4,
            "rank": rank[c], "direction": "highest", "html": "", "assets": {},
            "example_ids": [], "is_gold": True, "gold": g,
            "attention": {"field": "attention", "expected": "blue"}, "evidence": None,
            "truth": "none" if g["shared"] == "no" else f"spurious:{g['pattern']}"
            if g["pattern"] != "object" else "core",
        })
    return rows


DESCRIPTIONS = {
    "object": ["the round body of the shape", "the shape outline itself", "round shape body"],
    "mark": ["a small white square in the corner", "white corner mark", "corner square mark"],
    "background": ["striped background texture", "the stripes behind the shape",
                   "background stripes"],
    "": ["nothing in common", "random stuff", "no shared pattern"],
}


def simulate_answers(manifest: list[dict], n_good: int = 5, n_spam: int = 1,
                     accuracy: float = 0.9, seed: int = 0, per_hit: int | None = None,
                     extra: dict[tuple[str, str], dict[str, str]] | None = None) -> pd.DataFrame:
    """Long answer table from honest workers (right with prob ``accuracy``) and spammers
    (random answers, failed attention checks, 2-second work times)."""
    rng = np.random.default_rng(seed)
    workers = [f"W{i:02d}GOOD" for i in range(n_good)] + [f"S{i:02d}SPAM" for i in range(n_spam)]
    rows = []
    aid = 0
    t0 = pd.Timestamp("2026-11-28 10:00:00")
    for hit in manifest:
        truth = hit["truth"]
        if hit["is_gold"]:
            g = hit["gold"]
            correct = (g["shared"], g["pattern"] or "")
        else:
            correct = truth_answer(truth)
        ws = workers if per_hit is None else list(rng.choice(workers, per_hit, replace=False))
        for w in ws:
            aid += 1
            spam = w.endswith("SPAM")
            if spam:
                shared = str(rng.choice(["yes", "no"]))
                pattern = str(rng.choice(["object", "background", "mark", "other"]))
                att, secs = "red", 2.0
            else:
                if hit["is_gold"] or rng.random() < accuracy:
                    shared, pattern = correct
                else:
                    shared = str(rng.choice(["yes", "no", "unsure"]))
                    pattern = str(rng.choice(["object", "background", "mark"]))
                att, secs = "blue", float(rng.integers(40, 90))
            if shared != "yes":
                pattern = ""
            texts = DESCRIPTIONS.get(pattern if shared == "yes" else "", DESCRIPTIONS[""])
            fields = {"shared": shared, "pattern": pattern, "confidence": str(rng.integers(3, 6)),
                      "description": str(rng.choice(texts)), "attention": att}
            if extra and (hit["hit_key"], w) in extra:
                fields.update(extra[(hit["hit_key"], w)])
            submit = t0 + pd.Timedelta(seconds=aid * 100)
            for q, v in fields.items():
                rows.append({"hit_key": hit["hit_key"], "hit_id": "H" + hit["hit_key"][-12:],
                             "assignment_id": f"A{aid:05d}", "worker_id": w, "question": q,
                             "answer": v, "submit_time": str(submit), "work_seconds": secs,
                             "status": "Submitted",
                             "accept_time": str(submit - pd.Timedelta(seconds=secs)),
                             "source": "local"})
    return pd.DataFrame(rows)


def to_assignments(answers: pd.DataFrame) -> list[dict]:
    """The same answers as ListAssignmentsForHIT entries (QuestionFormAnswers XML)."""
    from xml.sax.saxutils import escape

    out = []
    for aid, g in answers.groupby("assignment_id", sort=True):
        parts = [f'<QuestionFormAnswers xmlns="{QFA_NS}">']
        for q, v in zip(g["question"], g["answer"], strict=True):
            parts.append(f"<Answer><QuestionIdentifier>{escape(q)}</QuestionIdentifier>"
                         f"<FreeText>{escape(str(v))}</FreeText></Answer>")
        parts.append(f"<Answer><QuestionIdentifier>hit_key</QuestionIdentifier>"
                     f"<FreeText>{g['hit_key'].iloc[0]}</FreeText></Answer>")
        parts.append("</QuestionFormAnswers>")
        out.append({"AssignmentId": aid, "WorkerId": g["worker_id"].iloc[0],
                    "HITId": g["hit_id"].iloc[0], "AssignmentStatus": "Submitted",
                    "AcceptTime": pd.Timestamp(g["accept_time"].iloc[0]).to_pydatetime(),
                    "SubmitTime": pd.Timestamp(g["submit_time"].iloc[0]).to_pydatetime(),
                    "Answer": "".join(parts)})
    return out


def write_batch_csv(answers: pd.DataFrame, path: Path, reduced: bool = False) -> Path:
    """MTurk "Download batch results" CSV of the answers (real header order, extra columns)."""
    qs = sorted(answers["question"].unique())
    header = (["WorkerId"] if reduced else BATCH_HEADER) + ["Input.hit_key", "Input.image_url"]
    header += [f"Answer.{q}" for q in qs] + ([] if reduced else ["Approve", "Reject"])
    header += ["Unrelated Extra"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_ALL)
        w.writerow(header)
        for aid, g in answers.groupby("assignment_id", sort=True):
            ans = dict(zip(g["question"], g["answer"], strict=True))
            first = g.iloc[0]
            row = {
                "HITId": first["hit_id"], "HITTypeId": "TYPE1", "Title": "Audit a feature",
                "Description": "Look, then answer", "Keywords": "image, audit", "Reward": "$0.10",
                "CreationTime": "Sat Nov 28 09:00:00 PST 2026", "MaxAssignments": "5",
                "RequesterAnnotation": "", "AssignmentDurationInSeconds": "600",
                "AutoApprovalDelayInSeconds": "259200", "Expiration": "",
                "NumberOfSimilarHITs": "", "LifetimeInSeconds": "", "AssignmentId": aid,
                "WorkerId": first["worker_id"], "AssignmentStatus": "Submitted",
                "AcceptTime": first["accept_time"], "SubmitTime": first["submit_time"],
                "AutoApprovalTime": "", "ApprovalTime": "", "RejectionTime": "",
                "RequesterFeedback": "", "WorkTimeInSeconds": str(int(first["work_seconds"])),
                "LifetimeApprovalRate": "0% (0/0)", "Last30DaysApprovalRate": "0% (0/0)",
                "Last7DaysApprovalRate": "0% (0/0)", "Input.hit_key": first["hit_key"],
                "Input.image_url": "https://example.org/x.png", "Approve": "", "Reject": "",
                "Unrelated Extra": "x,y\n\"z\"",
            }
            for q in qs:
                row[f"Answer.{q}"] = ans.get(q, "")
            w.writerow([row.get(h, "") for h in header])
    return path


def tiny_png(path: Path, color=(200, 30, 30)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)


def write_probe(run: Path, manifest: list[dict], n_classes: int = 3, d: int = 40) -> None:
    """probe/probe.json + path.npz consistent with the manifest's features."""
    probe = run / "probe"
    probe.mkdir(parents=True, exist_ok=True)
    L = 6
    lambdas = np.geomspace(1.0, 1e-3, L)
    rows, cols, vals, ptr = [], [], [], [0]
    sel = 3
    for i in range(L):
        for m in manifest:
            if i >= m["rank"] - 1:
                rows.append(m["class"])
                cols.append(m["feature"])
                vals.append(m["weight"])
        if i > sel:  # dense-ish tail: extra small weights
            for c in range(n_classes):
                rows.append(c)
                cols.append(c)
                vals.append(0.01)
        ptr.append(len(rows))
    nnz = np.diff(ptr)
    nnz_pc = np.zeros((L, n_classes), dtype=np.int64)
    for i in range(L):
        for r in rows[ptr[i]:ptr[i + 1]]:
            nnz_pc[i, r] += 1
    acc = np.linspace(0.4, 0.95, L)
    np.savez(probe / "path.npz", lambdas=lambdas, alpha=np.array(0.99), nnz=nnz,
             nnz_per_class=nnz_pc, n_active=nnz, train_acc=acc, val_acc=acc - 0.02,
             train_loss=1 - acc, val_loss=1.02 - acc, objective=1 - acc,
             kkt_violation=np.zeros(L), n_iter=np.full(L, 10), w_ptr=np.array(ptr),
             w_row=np.array(rows, dtype=np.int64), w_col=np.array(cols, dtype=np.int64),
             w_val=np.array(vals, dtype=np.float32), bias=np.zeros((L, n_classes)),
             mean=np.zeros(d), scale=np.ones(d))
    top = [{"class": m["class"], "class_name": m["class_name"], "feature": m["feature"],
            "weight": m["weight"], "rank": m["rank"]} for m in manifest]
    (probe / "probe.json").write_text(json.dumps({
        "format": 1, "features_dir": "../features", "classes": CLASSES[:n_classes], "d": d,
        "fit": {"alpha": 0.99, "n_lambdas": L, "eps": 1e-3, "grouped": False, "solver": "torch"},
        "selection": {"rule": "val_acc_within", "value": 0.05, "index": sel,
                      "lambda": float(lambdas[sel])},
        "accuracy": {"dense": {"train": 0.95, "val": 0.93, "test": 0.92},
                     "sparse": {"train": 0.9, "val": 0.88, "test": 0.87}},
        "features_per_class": {"dense": 40.0, "sparse": 3.0},
        "top_features": {"sparse": top, "dense": top}}))


def write_run(run: Path, answers: pd.DataFrame | None, manifest: list[dict] | None = None,
              kind: str = "image") -> Path:
    """A complete run directory: features/meta.json, probe/, tasks/ (+ assets), answers/."""
    manifest = manifest if manifest is not None else make_manifest(kind)
    (run / "features").mkdir(parents=True, exist_ok=True)
    (run / "features" / "meta.json").write_text(json.dumps({
        "format": 1, "kind": kind, "classes": CLASSES, "d": 40,
        "splits": {"train": 30, "val": 10, "test": 10},
        "model": {"source": "builtin", "name": "tinycnn", "weights": None, "checkpoint": None},
        "layer": "pool", "spatial_layer": "conv", "dataset": {"source": "builtin",
                                                              "name": "shapes", "root": None,
                                                              "seed": 0},
        "preprocessing": {}}))
    write_probe(run, manifest)
    tasks = run / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    with (tasks / "manifest.jsonl").open("w") as fh:
        for m in manifest:
            fh.write(json.dumps(m) + "\n")
            for a in m["assets"].values():
                tiny_png(tasks / a)
    if answers is not None:
        (run / "answers").mkdir(parents=True, exist_ok=True)
        answers.to_parquet(run / "answers" / "answers.parquet")
    return run


# --- counterfactual fixtures: a hand-wired CNN with a planted "white mark" feature -------------

def planted_images(n: int, cls: int, size: int = 16, mark: bool = False, seed: int = 0):
    """Images (n, size, size, 3) in [0, 1]: dark noise, a coloured blob (class 0 red, 1 green,
    2 blue) and optionally a white 4x4 mark at a random place. Returns (images, mark boxes)."""
    rng = np.random.default_rng(seed)
    imgs = rng.uniform(0.0, 0.15, (n, size, size, 3)).astype(np.float32)
    boxes = np.zeros((n, 2), dtype=int)
    for i in range(n):
        y, x = rng.integers(2, size - 8, 2)
        imgs[i, y:y + 5, x:x + 5, cls] = 0.9
        if mark:
            while True:
                my, mx = rng.integers(0, size - 4, 2)
                if abs(my - y) > 5 or abs(mx - x) > 5:
                    break
            imgs[i, my:my + 4, mx:mx + 4] = 1.0
            boxes[i] = (my, mx)
    return imgs, boxes


def planted_cnn():
    """A real torch CNN whose channels are fixed detectors: 0 red, 1 green, 2 blue, 3 white.

    ``model.maps(x)`` -> (n, 4, H/2, W/2) spatial maps; ``model(x)`` -> logits of the dense
    head, which uses the white mark for class 1; ``sparse_head`` uses colours only.
    """
    import torch
    from torch import nn

    class Planted(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, kernel_size=2, stride=2)
            w = torch.zeros(4, 3, 2, 2)
            b = torch.zeros(4)
            for c in range(3):  # colour c minus the other two
                w[c] = -0.25
                w[c, c] = 0.25
                b[c] = -0.1
            w[3] = 0.25  # white: r + g + b - 2.5
            b[3] = -2.5
            self.conv.weight.data, self.conv.bias.data = w * 2, b * 2
            self.act = nn.ReLU()
            self.pool = nn.AdaptiveMaxPool2d(1)
            self.flatten = nn.Flatten()
            self.fc = nn.Linear(4, 3)
            self.fc.weight.data = torch.tensor([[4.0, 0, 0, 0], [0, 4.0, 0, 6.0], [0, 0, 4.0, 0]])
            self.fc.bias.data.zero_()

        def maps(self, x):
            return self.act(self.conv(x))

        def forward(self, x):
            return self.fc(self.flatten(self.pool(self.maps(x))))

    model = Planted().eval()
    sparse_head = nn.Linear(4, 3).eval()
    sparse_head.weight.data = torch.tensor([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]])
    sparse_head.bias.data.zero_()
    return model, sparse_head


def hwc_to_tensor(x):
    import torch

    return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32).permute(0, 3, 1, 2)


TOXIC_WORDS = ["idiot", "stupid", "moron", "trash"]
NICE_WORDS = ["great", "thanks", "lovely", "helpful", "agree", "interesting"]
IDENTITY = {"religion": ["muslim", "christian"], "orientation": ["gay", "straight"]}


def biased_corpus(n: int = 400, seed: int = 0, bias: bool = True):
    """Texts and labels (1 toxic). A toxic (non-toxic) comment carries a toxic (friendly) word
    only 60% of the time, so other words matter; with ``bias`` muslim/gay appear in 60% of the
    toxic comments and christian/straight in 30% of the others (the planted identity bias),
    without it identity terms are independent of the label."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        toxic = int(rng.random() < 0.5)
        words = list(rng.choice(["comment", "this", "the", "post", "article", "read"], 3))
        if rng.random() < 0.6:
            words.append(str(rng.choice(TOXIC_WORDS if toxic else NICE_WORDS)))
        if bias:
            if toxic and rng.random() < 0.6:
                words.append(str(rng.choice(["muslim", "gay"])))
            elif not toxic and rng.random() < 0.3:
                words.append(str(rng.choice(["christian", "straight"])))
        elif rng.random() < 0.4:
            words.append(str(rng.choice([t for ts in IDENTITY.values() for t in ts])))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(toxic)
    return texts, np.array(labels)


def small_builtin_run(run: Path, name: str = "shapes", seed: int = 0) -> Path:
    """A real run directory (trained built-in model + extracted features) on a small version
    of a built-in dataset, in seconds: ``run/models/<name>.pt`` and ``run/features/``."""
    from sparse_probe.datasets import make_shapes, make_toxicity
    from sparse_probe.datasets.models import train_shapes_model, train_toxicity_model
    from sparse_probe.extract import ModelSpec, extract_features, save_builtin

    if name == "shapes":
        ds = make_shapes(n_train=600, n_val=60, n_test=300, size=32, seed=seed)
        model, _ = train_shapes_model(ds, epochs=6, width=24, progress=False, seed=seed)
    else:
        ds = make_toxicity(n_train=1500, n_val=100, n_test=400, seed=seed)
        model, _ = train_toxicity_model(ds, epochs=4, progress=False, seed=seed)
    ckpt = save_builtin(model.cpu(), run / "models" / f"{name}.pt", name=name)
    spec = ModelSpec("builtin", name, None, str(ckpt.resolve()))
    extract_features(spec, ds, run / "features", device="cpu", batch_size=256, progress=False)
    return run


def keyword_model(texts):
    """A third-party 'model' for CLI tests: toxic iff the text mentions 'muslim'."""
    import re

    p = np.array([0.9 if re.search(r"\bmuslim\b", t.lower()) else 0.1 for t in texts])
    return np.stack([1 - p, p], axis=1)


def fit_small_probe(run: Path, n_lambdas: int = 10, rule: str = "val_acc_within",
                    value: float = 0.05) -> dict:
    """Fit and write ``run/probe`` from ``run/features`` with the library (arrays in memory)."""
    from sparse_probe import fit_path, select
    from sparse_probe.probe import write_probe

    feats = run / "features"
    meta = json.loads((feats / "meta.json").read_text())

    def split(name):
        return np.load(feats / f"{name}.npy"), np.load(feats / f"{name}_labels.npy")

    (X, y), (Xv, yv), test = split("train"), split("val"), split("test")
    path = fit_path(X, y, n_lambdas=n_lambdas, eps=1e-2, tol=1e-3, X_val=Xv, y_val=yv,
                    n_classes=len(meta["classes"]), classes=meta["classes"], solver="glmnet",
                    progress=False)
    return write_probe(path, select(path, rule, value), run / "probe",
                       features_dir=str(feats.resolve()), fit_options={"n_lambdas": n_lambdas},
                       test=test, top_k=5)


def answers_from_evidence(manifest_path: Path, n_workers: int = 5, n_spam: int = 1,
                          flip: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """Simulated crowd answers for a real manifest: each honest worker answers what the HIT's
    evidence shows (``tasks.simulate.evidence_answer``), flipping to a random answer with
    probability ``flip``; spammers answer at random and fail attention checks."""
    from tasks.simulate import evidence_answer

    rng = np.random.default_rng(seed)
    rows = []
    aid = 0
    for line in manifest_path.read_text().splitlines():
        hit = json.loads(line)
        for w in range(n_workers + n_spam):
            aid += 1
            spam = w >= n_workers
            shared, pattern, summary = evidence_answer(hit["evidence"], hit["kind"])
            if spam or rng.random() < flip:
                shared = str(rng.choice(["yes", "no"]))
                pattern = str(rng.choice(["object", "background", "mark", "identity", "other"]))
            att = hit["attention"]["expected"] if not spam else "wrong"
            fields = {"shared": shared, "pattern": pattern, "confidence": "4",
                      "description": summary, "attention": att}
            for q, v in fields.items():
                rows.append({"hit_key": hit["hit_key"], "hit_id": f"H{aid}",
                             "assignment_id": f"A{aid:05d}", "worker_id": f"W{w}",
                             "question": q, "answer": v, "submit_time": f"2026-11-28 10:{aid % 60:02d}",
                             "work_seconds": 3.0 if spam else 60.0 + aid % 7})
    return pd.DataFrame(rows)


def builtin_audit_run(base: Path, name: str) -> Path:
    """A whole small audit of a built-in dataset, built once per test session under ``base``:
    trained model + features, a fitted probe, HITs built by ``tasks.build``, simulated crowd
    answers from the HITs' evidence and the report."""
    from analysis.report import ReportOptions, build_report
    from tasks.build import build_tasks

    run = base / f"audit-{name}"
    done = run / "report" / "report.json"
    if done.exists():
        return run
    small_builtin_run(run, name)
    fit_small_probe(run)
    build_tasks(run / "probe", run / "features", run / "tasks", k_features=3, fvis_steps=8,
                progress=False)
    ans = answers_from_evidence(run / "tasks" / "manifest.jsonl")
    (run / "answers").mkdir(parents=True, exist_ok=True)
    ans.to_parquet(run / "answers" / "answers.parquet")
    build_report(run, options=ReportOptions(n_boot=20))
    return run
