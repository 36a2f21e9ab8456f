"""Run reports with classes that are not 0..K-1 or have no weights: without weights the report
says so instead of showing "0% of weight" and does not say "no feature has been judged
spurious" beside a card counting spurious ones; 1-based ids keep their own names."""

from __future__ import annotations

from helpers_analysis import make_manifest, simulate_answers, write_run

from analysis.report import ReportOptions, build_report


def test_report_without_weights_says_what_it_lacks(tmp_path):
    manifest = make_manifest()
    for m in manifest:
        m["weight"] = None
    answers = simulate_answers(manifest, n_good=5, n_spam=0, seed=1)
    write_run(tmp_path, answers, manifest)
    for f in (tmp_path / "probe").glob("path*.npz"):
        f.unlink()
    result = build_report(tmp_path, options=ReportOptions(n_boot=10))
    html = (tmp_path / "report" / "index.html").read_text()
    assert result["summary"]["n_spurious"] > 0
    assert "of weight on spurious features" not in html
    assert "no feature weights" in html
    assert "No feature has been judged spurious" not in html
    assert f"{result['summary']['n_spurious']} features judged spurious" in html


def test_one_based_class_ids_keep_their_own_names(tmp_path):
    """Class ids 1..3 (not 0..2) and a class past the run's class list: every feature is
    shown under its own class's name."""
    import json
    from html.parser import HTMLParser

    manifest = make_manifest()
    answers = simulate_answers(manifest, n_good=4, n_spam=0, seed=2)
    write_run(tmp_path, answers, manifest)
    names = {0: "circle", 1: "square", 2: "triangle"}
    for m in manifest:
        m["class_name"] = names[m["class"]]
        m["class"] = m["class"] + 1
    (tmp_path / "tasks" / "manifest.jsonl").write_text(
        "".join(json.dumps(m) + "\n" for m in manifest))
    build_report(tmp_path, options=ReportOptions(n_boot=5))

    class Sections(HTMLParser):
        def __init__(self):
            super().__init__()
            self.current, self.h3, self.seen = None, False, {}

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "section" and a.get("id", "").startswith("class-"):
                self.current = a["id"]
                self.seen[self.current] = {"name": "", "features": set()}
            self.h3 = tag == "h3" and self.current is not None

        def handle_endtag(self, tag):
            if tag == "h3":
                self.h3 = False

        def handle_data(self, data):
            if self.current and self.h3:
                self.seen[self.current]["name"] += data
            if self.current and data.strip().startswith("feature "):
                self.seen[self.current]["features"].add(data.strip().split()[1])

    p = Sections()
    p.feed((tmp_path / "report" / "index.html").read_text())
    want = {}
    for m in manifest:
        if not m.get("is_gold"):
            want.setdefault(f"class-{m['class']}", (m["class_name"], set()))[1].add(
                str(m["feature"]))
    assert set(want) <= set(p.seen)
    for anchor, (name, feats) in want.items():
        assert p.seen[anchor]["name"].startswith(name), anchor
        assert feats <= p.seen[anchor]["features"], anchor
