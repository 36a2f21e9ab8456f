"""``solver="glmnet"``: the same path through python-glmnet's Fortran coordinate descent.

Calls glmnet's ``lognet`` directly (multinomial family, our λ sequence, ``isd=0`` on features we
standardized ourselves) so that both backends solve exactly the DESIGN.md objective; ``kopt=2``
selects glmnet's grouped multinomial penalty. Every point is then re-evaluated by the shared
float64 objective and KKT check, so the returned :class:`~sparse_probe.path.Path` carries the
same verified diagnostics as the torch solver's. glmnet copies X to float64 Fortran order
(8·n·d bytes): this backend is for data that fits in RAM twice over.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from sparse_probe.fit_common import lambda_path
from sparse_probe.objective import objective_f64
from sparse_probe.path import Path

__all__ = ["fit_path_glmnet"]

log = logging.getLogger(__name__)


def _check_jerr(jerr: int, lmu: int, n_lams: int, max_iter: int) -> str:
    """Read glmnet's ``jerr`` flag; warn on a truncated path, raise on a fatal error.

    glmnet's documented codes (``lognet`` in glmnet5.f): ``0`` success; ``-k`` λ number k did
    not converge within ``maxit`` passes, ``-10000-k`` the ``nx`` limit on nonzero features was
    exceeded at λ number k, ``-20000-k`` the ``pmax`` limit -- in all three the solutions for
    the larger λ are returned (``lmu`` of them); ``8000+k`` / ``9000+k`` the null probability
    of class k is below 1e-5 / above 1 - 1e-5; other positive codes are memory errors.

    Parameters
    ----------
    jerr, lmu : the flag and the number of solutions glmnet returned.
    n_lams : the number of λ asked for.
    max_iter : the ``maxit`` glmnet ran with (for the message).

    Returns
    -------
    str
        Why the path stopped where it did: ``"complete"``, ``"deviance rule"`` (glmnet's own
        early stop with ``jerr == 0``) or the reason for a negative ``jerr``.

    Raises
    ------
    RuntimeError
        On a positive (fatal) ``jerr``, naming the code and its meaning.
    """
    if jerr > 0:
        if 8000 < jerr < 9000:
            why = f"class {jerr - 8000} has null probability below 1e-5 (too rare to fit)"
        elif 9000 < jerr < 10000:
            why = f"class {jerr - 9000} has null probability above 1 - 1e-5 (nearly all labels)"
        else:
            why = "memory allocation error"
        raise RuntimeError(f"glmnet lognet failed with error code {jerr}: {why}")
    if jerr < 0:
        k = -jerr
        if k > 20000:
            stopped = f"pmax limit on nonzero features exceeded at λ #{k - 20000}"
        elif k > 10000:
            stopped = f"nx limit on nonzero features exceeded at λ #{k - 10000}"
        else:
            stopped = f"λ #{k} did not converge within maxit={max_iter} passes"
        log.warning("glmnet: %s; returning the %d of %d points before it", stopped, lmu, n_lams)
        return stopped
    if lmu < n_lams:
        log.warning("glmnet stopped the path early after %d of %d λ (its deviance rule)", lmu, n_lams)
        return "deviance rule"
    return "complete"


def fit_path_glmnet(src, y, C, mean, scale, *, penalty, n_lambdas, eps, lambdas, val,
                    classes, t0, tol, evaluate, progress, thr: float = 1e-10,
                    max_iter: int = 1_000_000) -> Path:
    """Fit the path with glmnet; arguments as :func:`sparse_probe.fit.fit_path` (internal).

    ``penalty`` (:mod:`sparse_probe.penalties`) gives α and glmnet's ``kopt`` (grouped or not)
    and evaluates the value and KKT violation of every point."""
    alpha, grouped = penalty.alpha, penalty.grouped
    try:
        from glmnet._glmnet import lognet, lsolns
    except ImportError as exc:  # pragma: no cover - python-glmnet is a dependency
        raise ImportError("solver='glmnet' needs python-glmnet (pip install python-glmnet)") from exc
    n, d = src.n, src.d
    Xs = np.empty((n, d), dtype=np.float64, order="F")
    for s, block in src.chunks():
        xb = block.detach().cpu().numpy() if hasattr(block, "detach") else block
        Xs[s : s + xb.shape[0]] = (np.asarray(xb, dtype=np.float64) - mean) / scale
    Y = np.zeros((n, C), dtype=np.float64, order="F")
    Y[np.arange(n), y] = 1.0
    G0 = -(Y.T @ Xs) / n
    lam_max = penalty.lambda_max(G0)
    lams = lambda_path(lam_max, n_lambdas, eps) if lambdas is None else np.asarray(lambdas, float)
    offset = np.zeros((n, C), dtype=np.float64, order="F")
    bounds = np.empty((2, d), dtype=np.float64, order="F")
    bounds[0], bounds[1] = -np.inf, np.inf
    lmu, a0, ca, ia, nin, _dev0, _dev, _alm, nlp, jerr = lognet(
        alpha, C, Xs, Y.copy(order="F"), offset, np.array([0], dtype=np.int32),
        np.ones(d), bounds, d + 1, 1.0, lams, thr, d + 1, len(lams), 0, 1, max_iter,
        2 if grouped else 0,
    )
    stopped = _check_jerr(int(jerr), int(lmu), len(lams), max_iter)
    if lmu == 0:
        raise RuntimeError(f"glmnet lognet returned no solution ({stopped})")
    coefs = lsolns(d, ca[:, :, :lmu], ia, nin[:lmu])  # (d, C, lmu)
    val_src, y_val = val
    rec: dict[str, list] = Path.empty_records()
    fit_seconds = time.perf_counter() - t0
    for i in range(lmu):
        W = np.ascontiguousarray(coefs[:, :, i].T)
        b = a0[:, i].copy()
        obj, G, gb = objective_f64(Xs, y, W, b, lams[i], alpha, grouped=grouped, return_grad=True)
        loss = obj - penalty.value(W, lams[i])
        acc = float(((Xs @ W.T + b).argmax(1) == y).mean())
        viol = max(float(penalty.kkt_violation(G, W, lams[i]).max()), float(np.abs(gb).max()))
        va, vl = evaluate(val_src, y_val, W, b, mean, scale)
        Path.append_point(rec, W, b, train_acc=acc, train_loss=loss, val_acc=va, val_loss=vl,
                          objective=obj, kkt_violation=viol,
                          n_iter=int(nlp) if i == lmu - 1 else 0,
                          time=fit_seconds * (i + 1) / lmu)
    info = {"solver": "glmnet", "method": "lognet-grouped" if grouped else "lognet",
            "thr": thr, "eps": eps, "n_lambdas": n_lambdas, "lambda_max": lam_max,
            "n_samples": n, "n_features": d, "n_classes": C, "total_passes": int(nlp),
            "total_seconds": fit_seconds, "tol": tol, "jerr": int(jerr), "stopped": stopped}
    return Path.from_records(rec, lambdas=lams, alpha=alpha, grouped=grouped, mean=mean,
                             scale=scale, classes=classes, info=info)

