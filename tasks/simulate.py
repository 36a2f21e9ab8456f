"""Simulated crowd workers that use the task server's worker UI over HTTP, like a browser.

Each worker logs in with a token issued through the admin route, lists the HITs open to them,
accepts one, opens the assignment page, follows its iframe to the HIT page, reads the form
(field names, radio/select options, hidden inputs) with an HTML parser, fills it in and posts it
to ``{turkSubmitTo}/mturk/externalSubmit``. Answers come from what the HIT shows, read as a
careful person reads it: an image HIT shows several maps of where the feature fires and, for
each, how much of the feature is left with the map's highlighted region removed or with only
that region kept (the contrast panel); the reader trusts the map whose region explains the
feature best and sees where that map's mass lies (the manifest row's ``evidence_panels``,
each map's share of mass on the object, on each planted cue and on the rest, measured with
the ground-truth masks; :func:`tasks.viz.evidence.reader_evidence`); where the maps leave it
open, a cue that is in most top images and rare in the class's least-activating ones (the
least-activating panel; ``evidence_images``) is what they share. A text HIT shows highlighted
comments and the words that push the feature most when added to ordinary comments (the
insertion panel); the reader takes what clearly dominates the insertion panel, else the
highlighted words (:func:`tasks.viz.text_panels.text_reader_evidence`). Rows without panels
(older manifests) give ``evidence``, the shares of the one attribution shown. Workers
never see ``truth``. Better evidence on the page therefore gives better simulated answers.

Worker kinds:

- *diligent* (accuracy ``p``, default 0.95): ``shared=yes`` when one category holds a clear
  majority of the mass; ``pattern`` = ``object`` when the object dominates, else the dominant
  cue's kind (``watermark``/``mark`` -> mark, ``texture``/``background`` -> background, text
  cues such as ``identity`` -> identity); with probability ``1-p`` a question gets a random
  option. They answer the attention check correctly and describe what dominates.
- *noisy*: the same with a lower ``p`` (default 0.6).
- *spammer*: random options, or always the first option ("constant").

Simulated workers can only answer what the evidence lets them see: a HIT without ``evidence``
(data without ground-truth masks, e.g. a user's own dataset) would get "unsure" or guesses.
:func:`simulate_crowd` therefore refuses a manifest with such HITs (:class:`BlindCrowdError`)
unless ``allow_blind``; then the workers' ids start with ``SIMBLIND`` and
``simulation.json`` in the tasks directory records ``"source": "simulated-blind"``, so every
answer is recognisably a blind simulation, never a judgement.

Turns are scheduled in rounds (every worker tries one HIT per round, ``concurrency`` at a time)
until a round submits nothing, i.e. every HIT has all its assignments.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from bs4 import BeautifulSoup
from tqdm import tqdm

from sparse_probe.questions import (
    CONFIDENCE,
    CORE,
    NO_PATTERN,
    PATTERN,
    PRESENCE,
    SPURIOUS,
    UNSURE,
    QuestionSchema,
    default_schema,
)
from sparse_probe.rundir import read_manifest
from tasks.viz.evidence import cue_kind, reader_evidence
from tasks.viz.text_panels import text_reader_evidence

__all__ = [
    "BLIND_SOURCE",
    "SIMULATED_SOURCE",
    "BlindCrowdError",
    "SimulationResult",
    "WorkerProfile",
    "choose_answers",
    "evidence_answer",
    "parse_hit_form",
    "simulate_crowd",
]

log = logging.getLogger(__name__)

#: ``source`` recorded in ``simulation.json``: workers read the ground-truth evidence / did not.
SIMULATED_SOURCE = "simulated"
BLIND_SOURCE = "simulated-blind"
SIMULATION_RECORD = "simulation.json"


class BlindCrowdError(ValueError):
    """HITs without ground-truth evidence: simulated workers cannot see what they show."""


@dataclass(frozen=True)
class WorkerProfile:
    """One simulated worker: id, kind (diligent/noisy/spammer), accuracy, spam style, speed."""

    worker_id: str
    kind: str
    accuracy: float
    spam_style: str | None = None
    median_seconds: float = 45.0


@dataclass
class SimulationResult:
    """Counts of one simulation."""

    submitted: int = 0
    rounds: int = 0
    refused: int = 0
    per_worker: dict[str, int] = field(default_factory=dict)
    profiles: dict[str, WorkerProfile] = field(default_factory=dict)
    source: str = SIMULATED_SOURCE
    blind_hits: int = 0

    def summary(self) -> str:
        """One line for the console."""
        kinds = Counter(p.kind for p in self.profiles.values())
        line = (f"{self.submitted} assignments submitted by {len(self.profiles)} simulated "
                f"workers ({dict(kinds)}) in {self.rounds} rounds; {self.refused} refused "
                "accepts")
        if self.source == BLIND_SOURCE:
            line += (f"; BLIND: {self.blind_hits} HITs have no ground-truth evidence, so these "
                     f"answers are guesses (source {BLIND_SOURCE}), not judgements")
        else:
            line += "; the workers read each HIT's ground-truth evidence"
        return line


# --------------------------------------------------------------------------- answering
def evidence_answer(evidence: Mapping[str, Any] | None, kind: str = "image",
                    margin: float = 1.5, majority: float = 0.4,
                    schema: QuestionSchema | None = None) -> tuple[str, str, str]:
    """What a careful reader concludes from a HIT's evidence: ``(shared, pattern, summary)``.

    The evidence shares (object, each cue, rest) are compared; a category "dominates" when it
    holds at least ``majority`` of the mass and ``margin`` times the runner-up. Then
    ``shared=yes`` and ``pattern`` is ``object`` or the cue's kind; otherwise ``no``/``other``.
    The form values are those of ``schema`` (default built-in) with these meanings.
    """
    schema = schema or default_schema()
    presence, pattern = schema.field_for(PRESENCE) or "", schema.field_for(PATTERN) or ""
    other = schema.value_for(pattern, SPURIOUS, "other") or ""

    def answer(meaning: str, spurious_kind: str | None = None) -> str:
        if spurious_kind is not None:
            return schema.value_for(pattern, SPURIOUS, spurious_kind, kind) or other
        return schema.value_for(pattern, meaning) or ""

    yes, no = schema.value_for(presence, PATTERN) or "", schema.value_for(presence, NO_PATTERN)
    if not evidence:
        return (schema.value_for(presence, UNSURE) or no or "", other,
                "hard to tell what these examples share")
    shares: dict[str, float] = {"object": float(evidence.get("object") or 0.0)}
    for name, value in (evidence.get("cues") or {}).items():
        shares[f"cue:{name}"] = float(value or 0.0)
    shares["rest"] = float(evidence.get("background") or 0.0)
    ranked = sorted(shares.items(), key=lambda kv: kv[1], reverse=True)
    (top, top_v), second_v = ranked[0], (ranked[1][1] if len(ranked) > 1 else 0.0)
    total = sum(shares.values()) or 1.0
    if top_v / total < majority or top_v < margin * second_v or top == "rest":
        return no or "", other, "the highlighted regions do not share one pattern"
    if top == "object":
        what = "words of the class" if kind == "text" else "the object itself"
        return yes, answer(CORE), f"the highlights cover {what}"
    cue = top.split(":", 1)[1]
    return (yes, answer(SPURIOUS, cue_kind(cue)),
            f"the highlights are mostly on the {cue}, not the object")


@dataclass
class HitForm:
    """A parsed HIT form: action, hidden fields, and the choices of every visible field."""

    action: str
    hidden: dict[str, str]
    choices: dict[str, list[str]]
    text_fields: list[str]


def parse_hit_form(html: str) -> HitForm:
    """Parse the first ``<form>`` of a HIT page (radios, selects, text inputs, textareas)."""
    soup = BeautifulSoup(html, "html.parser")
    form = soup.find("form")
    if form is None:
        raise ValueError("HIT page has no <form>")
    hidden: dict[str, str] = {}
    choices: dict[str, list[str]] = {}
    text_fields: list[str] = []
    for el in form.find_all(["input", "select", "textarea"]):
        name = el.get("name")
        if not name:
            continue
        if el.name == "select":
            opts = [o.get("value", o.get_text(strip=True)) for o in el.find_all("option")]
            choices[name] = [o for o in opts if o != ""]
        elif el.name == "textarea":
            text_fields.append(name)
        else:
            typ = (el.get("type") or "text").lower()
            if typ == "hidden":
                hidden[name] = el.get("value", "")
            elif typ in ("radio", "checkbox"):
                choices.setdefault(name, []).append(el.get("value", "on"))
            elif typ not in ("submit", "button", "reset", "image", "file"):
                text_fields.append(name)
    return HitForm(form.get("action") or "", hidden, choices, text_fields)


def choose_answers(form: HitForm, row: Mapping[str, Any], profile: WorkerProfile,
                   rng: random.Random, schema: QuestionSchema | None = None) -> dict[str, str]:
    """Fill a parsed form as ``profile`` would, from the manifest ``row``'s evidence."""
    schema = schema or default_schema()
    presence, pattern_field = schema.field_for(PRESENCE), schema.field_for(PATTERN)
    other = schema.value_for(pattern_field or "", SPURIOUS, "other")
    if row.get("kind") == "text":  # highlighted comments and the insertion panel
        seen = text_reader_evidence(row.get("evidence_panels"), row.get("evidence"))
    else:
        seen = reader_evidence(row.get("evidence"), row.get("evidence_panels"),
                               row.get("evidence_images"), row.get("colour"),
                               row.get("detail"))
    shared, pattern, summary = evidence_answer(seen, row.get("kind", "image"), schema=schema)
    says_yes = schema.meaning(presence or "", shared) == PATTERN
    attention = row.get("attention") or {}
    intended: dict[str, str] = {k: v for k, v in ((presence, shared), (pattern_field, pattern))
                                if k}
    if attention.get("field"):
        intended[attention["field"]] = str(attention.get("expected", ""))
    answers: dict[str, str] = {}
    for name, options in form.choices.items():
        if not options:
            continue
        if profile.kind == "spammer":
            answers[name] = options[0] if profile.spam_style == "constant" else rng.choice(options)
            continue
        if name == schema.field_for(CONFIDENCE):
            want = str(rng.choice([4, 5]) if says_yes else rng.choice([2, 3]))
        else:
            want = intended.get(name, "")
        if want not in options:
            want = other if other in options and name == pattern_field else rng.choice(options)
        is_attention = name == attention.get("field")
        p = 0.99 if (is_attention and profile.kind == "diligent") else profile.accuracy
        answers[name] = want if rng.random() < p else rng.choice(options)
    for name in form.text_fields:
        if profile.kind == "spammer":
            answers[name] = "good" if profile.spam_style == "constant" else rng.choice(
                ["nice", "ok", "yes", "good pictures"])
        else:
            answers[name] = summary
    return answers


# --------------------------------------------------------------------------- HTTP worker
class _Worker:
    def __init__(self, url: str, profile: WorkerProfile, token: str, manifest: dict[str, dict],
                 seed: int, time_scale: float, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.profile = profile
        self.manifest = manifest
        self.rng = random.Random(seed)
        self.time_scale = time_scale
        self.timeout = timeout
        self.session = requests.Session()
        self.done: set[str] = set()
        r = self.session.post(f"{self.url}/worker/login",
                              data={"worker_id": profile.worker_id, "token": token},
                              allow_redirects=False, timeout=timeout)
        if r.status_code not in (302, 303):
            raise RuntimeError(f"login of {profile.worker_id} failed: HTTP {r.status_code}")

    def turn(self) -> str:
        """Do one HIT: 'submitted', 'none' (nothing open) or 'refused' (lost a race)."""
        r = self.session.get(f"{self.url}/worker/", params={"format": "json"},
                             timeout=self.timeout)
        r.raise_for_status()
        open_hits = [h for h in r.json().get("hits", []) if h["hit_id"] not in self.done]
        if not open_hits:
            return "none"
        hit = self.rng.choice(open_hits)
        accept_url = urljoin(self.url + "/", hit.get("accept_url")
                             or f"/worker/hits/{hit['hit_id']}/accept")
        r = self.session.post(accept_url, timeout=self.timeout)
        self.done.add(hit["hit_id"])
        if r.status_code != 200 or "/worker/assignments/" not in r.url:
            return "refused"
        frame = BeautifulSoup(r.text, "html.parser").find("iframe")
        if frame is None or not frame.get("src"):
            raise RuntimeError(f"assignment page {r.url} has no iframe")
        page_url = urljoin(r.url, frame["src"])
        params = {k: v[0] for k, v in parse_qs(urlsplit(page_url).query).items()}
        page = self.session.get(page_url, timeout=self.timeout)
        page.raise_for_status()
        form = parse_hit_form(page.text)
        key = form.hidden.get("hit_key", "")
        row = self.manifest.get(key, {})
        answers = choose_answers(form, row, self.profile, self.rng)
        data = {**form.hidden, **answers, "assignmentId": params.get("assignmentId", "")}
        # The page's JavaScript points the form at {turkSubmitTo}/mturk/externalSubmit.
        submit_to = params.get("turkSubmitTo")
        action = (f"{submit_to.rstrip('/')}/mturk/externalSubmit" if submit_to
                  else urljoin(page_url, form.action or "/mturk/externalSubmit"))
        seconds = self.rng.lognormvariate(0.0, 0.4) * self.profile.median_seconds
        if self.time_scale > 0:
            time.sleep(seconds * self.time_scale)
        s = self.session.post(action, data=data, headers={"Referer": page_url},
                              timeout=self.timeout)
        if s.status_code >= 400:
            raise RuntimeError(f"submit of {params.get('assignmentId')} failed: "
                               f"HTTP {s.status_code}")
        return "submitted"


def _profiles(n_workers: int, spammer_share: float, noisy_share: float, rng: random.Random,
              diligent_accuracy: float, noisy_accuracy: float, prefix: str
              ) -> list[WorkerProfile]:
    n_spam = round(n_workers * spammer_share)
    n_noisy = round((n_workers - n_spam) * noisy_share)
    kinds = ["spammer"] * n_spam + ["noisy"] * n_noisy + \
        ["diligent"] * (n_workers - n_spam - n_noisy)
    rng.shuffle(kinds)
    out = []
    for i, kind in enumerate(kinds):
        wid = f"{prefix}{i:04d}"
        if kind == "spammer":
            out.append(WorkerProfile(wid, kind, 0.0, rng.choice(["random", "constant"]), 8.0))
        elif kind == "noisy":
            out.append(WorkerProfile(wid, kind, noisy_accuracy, None, 30.0))
        else:
            out.append(WorkerProfile(wid, kind, diligent_accuracy, None, 60.0))
    return out


def _load_manifest(tasks_dir: Path) -> dict[str, dict[str, Any]]:
    return {row["hit_key"]: row for row in read_manifest(tasks_dir)}


def blind_hits(manifest: dict[str, dict[str, Any]]) -> list[str]:
    """Keys of the HITs without ground-truth ``evidence`` (simulated workers cannot see them)."""
    return sorted(k for k, row in manifest.items() if not row.get("evidence"))


def simulate_crowd(
    url: str,
    tasks_dir: str | Path,
    *,
    n_workers: int = 20,
    spammer_share: float = 0.2,
    noisy_share: float = 0.25,
    seed: int = 0,
    concurrency: int = 8,
    admin_auth: tuple[str, str],
    diligent_accuracy: float = 0.95,
    noisy_accuracy: float = 0.6,
    time_scale: float = 0.0,
    max_rounds: int = 10_000,
    worker_prefix: str | None = None,
    timeout: float = 60.0,
    allow_blind: bool = False,
) -> SimulationResult:
    """Let ``n_workers`` simulated workers answer every open HIT of the server at ``url``.

    Parameters
    ----------
    url : str
        Task server base URL.
    tasks_dir : path
        The tasks directory whose manifest describes the HITs (evidence per ``hit_key``).
    n_workers, spammer_share, noisy_share : int, float, float
        Crowd size, share of spammers, share of noisy workers among the rest.
    seed : int
        Seeds worker kinds, choices and work times (HTTP interleaving still varies).
    concurrency : int
        Threads working at once.
    admin_auth : (user, password)
        Server admin credentials, to issue worker tokens (``POST /admin/api/workers``).
    time_scale : float
        Multiplier on sampled work times (lognormal around each kind's median seconds);
        0 submits at once.
    allow_blind : bool
        Run even where HITs have no ground-truth evidence: worker ids start with
        ``SIMBLIND`` and ``tasks_dir/simulation.json`` says ``"simulated-blind"``.

    Returns
    -------
    SimulationResult
        Submitted counts per worker, every worker's profile, and ``source``.

    Raises
    ------
    BlindCrowdError
        Some HITs have no ground-truth evidence and ``allow_blind`` is False.
    """
    if not 0 <= spammer_share <= 1 or not 0 <= noisy_share <= 1:
        raise ValueError("spammer_share and noisy_share must be in [0, 1]")
    if n_workers < 1 or concurrency < 1:
        raise ValueError("n_workers and concurrency must be >= 1")
    manifest = _load_manifest(Path(tasks_dir))
    blind = blind_hits(manifest)
    if blind and not allow_blind:
        raise BlindCrowdError(
            f"{Path(tasks_dir) / 'manifest.jsonl'}: {len(blind)} of {len(manifest)} HITs (e.g. "
            f"{blind[0]}) have no ground-truth evidence (object and cue masks, as the built-in "
            "datasets have), so simulated workers cannot see what they show; have people "
            "answer them, or pass --allow-blind to run anyway with every answer labelled "
            f"{BLIND_SOURCE}")
    source = BLIND_SOURCE if blind else SIMULATED_SOURCE
    rng = random.Random(seed)
    prefix = worker_prefix or (f"SIMBLIND{seed}W" if blind else f"SIM{seed}W")
    if blind and not prefix.startswith("SIMBLIND"):
        prefix = "SIMBLIND" + prefix
    from sparse_probe.rundir import write_json

    write_json(Path(tasks_dir) / SIMULATION_RECORD, {
        "source": source, "worker_prefix": prefix, "n_workers": n_workers, "seed": seed,
        "hits": len(manifest), "blind_hits": blind})
    profiles = _profiles(n_workers, spammer_share, noisy_share, rng, diligent_accuracy,
                         noisy_accuracy, prefix)
    base = url.rstrip("/")
    workers: list[_Worker] = []
    for i, prof in enumerate(profiles):
        r = requests.post(f"{base}/admin/api/workers", json={"worker_id": prof.worker_id},
                          auth=admin_auth, timeout=timeout)
        if r.status_code >= 300:
            raise RuntimeError(f"issuing a token for {prof.worker_id}: HTTP {r.status_code} "
                               f"{r.text[:200]!r}")
        workers.append(_Worker(base, prof, r.json()["token"], manifest, seed * 100_003 + i,
                               time_scale, timeout))
    result = SimulationResult(profiles={p.worker_id: p for p in profiles},
                              per_worker={p.worker_id: 0 for p in profiles}, source=source,
                              blind_hits=len(blind))
    lock = threading.Lock()
    bar = tqdm(desc="simulated assignments", unit="assignment", disable=None)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        active = list(workers)
        while active and result.rounds < max_rounds:
            result.rounds += 1
            order = list(active)
            rng.shuffle(order)
            outcomes = list(pool.map(lambda w: (w, w.turn()), order))
            active = []
            for w, outcome in outcomes:
                with lock:
                    if outcome == "submitted":
                        result.submitted += 1
                        result.per_worker[w.profile.worker_id] += 1
                        bar.update(1)
                    elif outcome == "refused":
                        result.refused += 1
                if outcome != "none":
                    active.append(w)
    bar.close()
    log.info("%s", result.summary())
    return result
