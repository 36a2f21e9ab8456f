"""A run report whose features have no weights says so instead of showing "0% of weight", and
does not say "no feature has been judged spurious" beside a card counting spurious ones."""

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
