"""``sparse-probe fit`` and ``sparse-probe inspect``: thin wrappers over
:func:`sparse_probe.fitting.fit_features` and :func:`sparse_probe.probe.load_probe`."""

from __future__ import annotations

import time
from pathlib import Path as FsPath

import click

from sparse_probe.penalties import DEFAULT_ALPHA

__all__ = ["LAYER_LABELS", "fit", "inspect"]

#: probe.json layer keys -> what they are called in output: "dense" is the least-regularized
#: point of the elastic-net path (the network's own last layer is "original").
LAYER_LABELS = {"dense": "dense path end", "sparse": "sparse"}


@click.command()
@click.option("--features", "features_dir", required=True, type=click.Path(path_type=FsPath),
              help="Features directory (train.npy, train_labels.npy, [val|test].npy, meta.json).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=FsPath),
              help="Probe directory to write (path.npz, probe.json, head.pt).")
@click.option("--alpha", default=DEFAULT_ALPHA, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="L1 share α of the elastic net.")
@click.option("--n-lambdas", default=100, show_default=True, type=click.IntRange(1))
@click.option("--eps", default=1e-3, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Smallest λ as a fraction of λ_max.")
@click.option("--grouped", is_flag=True, help="glmnet's grouped penalty (L2 over classes per feature).")
@click.option("--select", "select_rule", default="val_acc_within=0.05", show_default=True,
              help="val_acc_within=Δ | features_per_class=K | lambda=λ")
@click.option("--solver", type=click.Choice(["torch", "owlqn", "newton", "fista", "glmnet"]),
              default="torch", show_default=True,
              help="torch: the path algorithm choosing OWL-QN or proximal Newton per point "
                   "(FISTA for --grouped); owlqn, newton, fista: that restricted solver at "
                   "every point; glmnet: python-glmnet's coordinate descent.")
@click.option("--device", default=None, help="torch device for the solver (cpu, cuda, cuda:1).")
@click.option("--tol", default=1e-3, show_default=True, type=float,
              help="KKT tolerance relative to α·λ at each point.")
@click.option("--max-features-per-class", type=float, default=None,
              help="Stop the path once the mean features per class exceeds this.")
@click.option("--max-seconds", type=click.FloatRange(min=0), default=None,
              help="Time budget: stop the path after the first point past this many seconds "
                   "(probe.json's fit.stopped says so).")
@click.option("--top-k", default=10, show_default=True, type=click.IntRange(1),
              help="Top features per class listed in probe.json.")
@click.option("--threads", default=None,
              help="CPU threads: a count, or 'auto' (the cores other processes and the CPU "
                   "quota leave free, then a probe). Default: $SPARSE_PROBE_THREADS, else auto.")
def fit(features_dir, out_dir, alpha, n_lambdas, eps, grouped, select_rule, solver, device, tol,
        max_features_per_class, max_seconds, top_k, threads):
    """Fit the elastic-net path on extracted features and select the sparse decision layer."""
    from sparse_probe.fitting import fit_features
    from sparse_probe.select import parse_rule

    try:
        rule, value = parse_rule(select_rule)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--select") from None
    start = time.perf_counter()
    try:
        probe = fit_features(features_dir, out_dir, alpha=alpha, n_lambdas=n_lambdas, eps=eps,
                             grouped=grouped, select_rule=select_rule, solver=solver,
                             device=device, tol=tol,
                             max_features_per_class=max_features_per_class,
                             max_seconds=max_seconds, top_k=top_k, threads=threads)
    except ValueError as exc:  # RunDirError included: one line naming the file
        raise click.ClickException(str(exc).splitlines()[0]) from None
    seconds = time.perf_counter() - start
    acc, fpc, sel = probe["accuracy"], probe["features_per_class"], probe["selection"]

    def fmt(a):
        return f"{a:.3f}" if a is not None else "n/a"

    click.echo(f"path: {probe['fit']['n_points']} points, λ_max={probe['fit']['lambda_max']:.3e}, "
               f"max KKT violation {probe['kkt_violation_max']:.1e}, {seconds:.1f}s")
    if probe["fit"].get("stopped") not in (None, "complete"):  # "complete": the glmnet backend's
        click.echo(f"path stopped early ({probe['fit']['stopped']}): "
                   f"{probe['fit']['n_points']} of {n_lambdas} points")
    click.echo(f"selected #{sel['index']} ({rule}={value:g}): λ={sel['lambda']:.3e}")
    # probe.json keeps the key "dense" for the least-regularized point of the path; it is not
    # the network's own ("original") last layer, so it is printed as "dense path end"
    for name, label in LAYER_LABELS.items():
        click.echo(f"  {label:14s}: val acc {fmt(acc[name]['val'])}, "
                   f"test acc {fmt(acc[name]['test'])}, {fpc[name]:.1f} features/class")
    click.echo(f"wrote {out_dir}/path.npz, probe.json, head.pt")


@click.command()
@click.argument("probe_dir", type=click.Path(path_type=FsPath))
@click.option("--top", default=5, show_default=True, type=click.IntRange(1), help="Features per class.")
@click.option("--plot", "plot_file", type=click.Path(path_type=FsPath), default=None,
              help="Save the accuracy-vs-sparsity plot (PNG).")
@click.option("--layer", type=click.Choice(["sparse", "dense-path-end", "dense"]),
              default="sparse", show_default=True,
              help="The selected sparse head or the least-regularized path point "
                   "(dense-path-end; 'dense' is the same, kept for compatibility).")
def inspect(probe_dir, top, plot_file, layer):
    """Print the path table and the top features per class of a fitted probe."""
    from sparse_probe.probe import load_probe

    try:
        probe, path = load_probe(probe_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    sel = probe["selection"]["index"]
    table = path.summary().splitlines()
    click.echo(table[0])
    for i, line in enumerate(table[1:]):
        click.echo(line + ("  <- selected" if i == sel else ""))
    layer = "dense" if layer == "dense-path-end" else layer
    click.echo(f"\ntop features per class ({LAYER_LABELS[layer]} layer, by |weight| on "
               "standardized features):")
    rows = [r for r in probe["top_features"][layer] if r["rank"] <= top]
    for c, name in enumerate(probe["classes"]):
        feats = [f"{r['feature']}({r['weight']:+.3f})" for r in rows if r["class"] == c]
        click.echo(f"  {name:>16s}: {' '.join(feats) if feats else '(no features)'}")
    if plot_file:
        from sparse_probe.plots import plot_path

        plot_path(path, plot_file, selected=sel)
        click.echo(f"saved {plot_file}")
