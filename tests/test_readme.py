"""Every command in README.md is exercised: CLI lines are parsed by the real click commands
(unknown subcommands or options fail), make targets exist, benchmark scripts exist and parse,
and the Python example runs."""

import re
import shlex
from pathlib import Path

import click
import pytest

from sparse_probe.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)
SHELL_LINES = [ln.strip() for lang, body in BLOCKS if lang == "bash" for ln in body.splitlines()
               if ln.strip() and not ln.strip().startswith("#")]
CLI_LINES = [ln for ln in SHELL_LINES if ln.startswith("sparse-probe ")]
# commands written inline in the prose, e.g. `sparse-probe tasks serve --db ... --issue-token alice`
CLI_LINES += [m for m in re.findall(r"`(sparse-probe [^`]+)`", README) if " --" in m or m.count(" ") > 1]


def _resolve(args: list[str]) -> tuple[click.Command, list[str], click.Context]:
    ctx = main.make_context("sparse-probe", [], resilient_parsing=True)
    cmd: click.Command = main
    while isinstance(cmd, click.Group) and args and not args[0].startswith("-"):
        sub = cmd.get_command(ctx, args[0])
        assert sub is not None, f"unknown subcommand {args[0]!r}"
        cmd, args = sub, args[1:]
        ctx = cmd.make_context(cmd.name, [], parent=ctx, resilient_parsing=True)
    return cmd, args, ctx


def test_readme_has_the_two_quick_start_commands():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert re.findall(r"```bash\n(.*?)```", quick, flags=re.S)[0].split() == ["make", "demo", "make", "test"]


@pytest.fixture
def scaffold(tmp_path, monkeypatch):
    """The files and folders the README's commands name, so click's existence checks pass."""
    for d in ("run/features", "run/probe", "run/tasks", "run/answers", "run/report", "data",
              "checkpoints"):
        (tmp_path / d).mkdir(parents=True)
    for f in ("checkpoints/resnet50.pt", "run/server.sqlite", "run/server.sqlite.credentials.json",
              "Batch_123_batch_results.csv", "comments.csv", "results.csv", "study.toml"):
        (tmp_path / f).write_text("")
    monkeypatch.chdir(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("line", CLI_LINES)
def test_readme_cli_line_parses(line, scaffold):
    args = shlex.split(line)[1:]
    cmd, rest, parent = _resolve(args)
    # parse for real: unknown options, bad choices and malformed values raise click errors
    ctx = cmd.make_context(cmd.name, rest, parent=parent.parent or parent)
    assert ctx.params is not None


@pytest.mark.parametrize("line", [ln for ln in SHELL_LINES if ln.startswith("make ")])
def test_readme_make_targets_exist(line):
    target = line.split()[1]
    assert re.search(rf"^{target}:", (ROOT / "Makefile").read_text(), flags=re.M)


@pytest.mark.parametrize("line", [ln for ln in SHELL_LINES if ln.startswith("python benchmarks/")])
def test_readme_benchmark_scripts_exist(line):
    script = ROOT / shlex.split(line)[1]
    assert script.is_file()
    compile(script.read_text(encoding="utf-8"), str(script), "exec")


@pytest.mark.slow
def test_readme_python_example_runs(capsys):
    code = [body for lang, body in BLOCKS if lang == "python"]
    assert code, "README has a Python example"
    exec(compile(code[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "accuracy" in out and "uses features" in out


def test_readme_images_exist():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert images
    for img in images:
        assert (ROOT / img).is_file(), img
