"""Fixtures for the publishing tests: a tiny built tasks directory and a live-server helper.

The tasks directory follows docs/contracts.md (manifest.jsonl + hits/<hit_key>.html + assets/)
so the publisher, collector, reviewer and simulated workers can be tested before (and
independently of) the HIT builder.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
    "rkJggg==")

ATTENTION = {"field": "attention", "expected": "blue"}

# (hit_key, kind, truth, evidence, gold)
FIXTURE_HITS: list[tuple[str, str, str, dict[str, Any], dict[str, str] | None]] = [
    ("img-c00-f0001-sparse", "image", "core",
     {"object": 0.78, "cues": {"watermark": 0.04, "texture": 0.06}, "background": 0.12}, None),
    ("img-c01-f0002-sparse", "image", "spurious:mark",
     {"object": 0.08, "cues": {"watermark": 0.81, "texture": 0.03}, "background": 0.08}, None),
    ("img-c02-f0003-sparse", "image", "spurious:background",
     {"object": 0.10, "cues": {"watermark": 0.02, "texture": 0.74}, "background": 0.14},
     {"shared": "yes", "pattern": "background"}),
    ("txt-c01-f0004-sparse", "text", "spurious:identity",
     {"object": 0.12, "cues": {"identity": 0.79}, "background": 0.09}, None),
]

PATTERNS = {"image": ["object", "background", "mark", "other"],
            "text": ["object", "identity", "other"]}


def hit_html(hit_key: str, kind: str, assets: list[str]) -> str:
    """A HIT page shaped like the builder's: MTurk form, ``../assets/`` images, JS action."""
    imgs = "".join(f'<img src="../assets/{escape(a)}" alt="example">' for a in assets)
    radios = "".join(
        f'<label><input type="radio" name="pattern" value="{p}" required> {p}</label>'
        for p in PATTERNS[kind])
    conf = "".join(f'<option value="{i}">{i}</option>' for i in range(1, 6))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Feature {escape(hit_key)}</title></head>
<body>
<h1>What do these examples share?</h1>
<div class="examples">{imgs}</div>
<form id="mturk_form" method="post" action="/mturk/externalSubmit">
  <input type="hidden" name="assignmentId" id="assignmentId" value="">
  <input type="hidden" name="hit_key" value="{escape(hit_key)}">
  <fieldset><legend>Is there a shared pattern?</legend>
    <label><input type="radio" name="shared" value="yes" required> yes</label>
    <label><input type="radio" name="shared" value="no"> no</label>
    <label><input type="radio" name="shared" value="unsure"> unsure</label>
  </fieldset>
  <fieldset><legend>What is the pattern?</legend>{radios}</fieldset>
  <label>Confidence <select name="confidence" required>{conf}</select></label>
  <label>Describe it <textarea name="description" required></textarea></label>
  <fieldset><legend>To show you are reading, choose blue.</legend>
    <label><input type="radio" name="attention" value="red" required> red</label>
    <label><input type="radio" name="attention" value="blue"> blue</label>
    <label><input type="radio" name="attention" value="green"> green</label>
  </fieldset>
  <input type="submit" id="submitButton" value="Submit">
</form>
<script>
(function () {{
  var p = new URLSearchParams(window.location.search);
  var aid = p.get("assignmentId") || "ASSIGNMENT_ID_NOT_AVAILABLE";
  document.getElementById("assignmentId").value = aid;
  var to = p.get("turkSubmitTo");
  if (to) {{ document.getElementById("mturk_form").action = to + "/mturk/externalSubmit"; }}
  if (aid === "ASSIGNMENT_ID_NOT_AVAILABLE") {{
    document.getElementById("submitButton").disabled = true;
  }}
}})();
</script>
</body></html>
"""


def make_tasks_dir(root: Path, hits: list[tuple] | None = None,
                   assignments: int | None = None, reward: str | list[str] | None = None) -> Path:
    """Write ``root/tasks`` (manifest.jsonl, hits/*.html, assets/*.png); return its path.

    ``assignments`` is written into every manifest line when given (as ``tasks build`` does);
    without it the manifest is one from before that field (publishing's default applies).
    ``reward`` likewise (a list: one per HIT).
    """
    tasks = Path(root) / "tasks"
    (tasks / "hits").mkdir(parents=True, exist_ok=True)
    (tasks / "assets").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (key, kind, truth, evidence, gold) in enumerate(hits or FIXTURE_HITS):
        asset = f"{key}-grid.png"
        (tasks / "assets" / asset).write_bytes(PNG)
        (tasks / "hits" / f"{key}.html").write_text(hit_html(key, kind, [asset]),
                                                   encoding="utf-8")
        lines.append(json.dumps({
            "hit_key": key, "kind": kind, "layer": "sparse", "class": i, "class_name": f"c{i}",
            "feature": i + 1, "weight": 1.0, "rank": 1, "direction": "highest",
            "html": f"hits/{key}.html", "assets": {"grid": f"assets/{asset}"},
            "example_ids": [f"ex{i}"], "is_gold": gold is not None, "gold": gold,
            "attention": ATTENTION, "evidence": evidence, "truth": truth,
            **({"assignments": assignments} if assignments is not None else {}),
            **({"reward": reward[i] if isinstance(reward, list) else reward}
               if reward is not None else {})}))
    (tasks / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tasks


def truth_to_answer(truth: str) -> tuple[str, str]:
    """The (shared, pattern) answer a correct worker gives for a manifest ``truth``."""
    if truth == "core":
        return "yes", "object"
    if truth.startswith("spurious:"):
        return "yes", truth.split(":", 1)[1]
    return "no", "other"
