"""Per-token attribution of a text feature by occlusion, and highlighted HTML.

The attribution of token ``t`` to feature ``j`` of text ``x`` is
``s * (f_j(x) - f_j(x without t))`` with ``s`` the sign of the class weight: how much the
feature's value (in the direction the class uses) drops when the token is removed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from markupsafe import Markup, escape

__all__ = ["highlight_html", "occlusion_attributions", "word_scores"]

Encode = Callable[[list[str]], torch.Tensor | np.ndarray]


def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def occlusion_attributions(encode: Encode, tokens: Sequence[Sequence[str]], feature: int,
                           sign: float = 1.0, batch_size: int = 512) -> list[np.ndarray]:
    """Occlusion attributions of every token of every text to one feature.

    Parameters
    ----------
    encode : callable
        ``encode(list of str) -> (m, d)`` features.
    tokens : list of list of str
        Each text's tokens; a text is ``" ".join(tokens)``.
    feature : int
    sign : float
        Sign of the class weight.

    Returns
    -------
    list of ndarray (t_i,)
    """
    s = 1.0 if sign >= 0 else -1.0
    texts: list[str] = []
    for toks in tokens:
        texts.append(" ".join(toks))
        texts.extend(" ".join([*toks[:i], *toks[i + 1 :]]) for i in range(len(toks)))
    vals = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            out = _as_numpy(encode(texts[start : start + batch_size]))
            vals.append(np.asarray(out, dtype=np.float64)[:, feature])
    v = np.concatenate(vals) if vals else np.zeros(0)
    result, pos = [], 0
    for toks in tokens:
        full = v[pos]
        result.append(s * (full - v[pos + 1 : pos + 1 + len(toks)]))
        pos += 1 + len(toks)
    return result


def highlight_html(tokens: Sequence[str], attributions: np.ndarray, scale: float | None = None
                   ) -> Markup:
    """Tokens as escaped HTML spans whose background opacity follows the positive attribution.

    Tokens with positive attribution get a ``title`` with the value and class ``"hl"``; the
    opacity is ``attr / scale`` (``scale`` defaults to the text's maximum).
    """
    a = np.clip(np.asarray(attributions, dtype=np.float64), 0, None)
    top = scale if scale is not None else (a.max() if a.size else 0.0)
    parts = []
    for tok, val in zip(tokens, a, strict=True):
        if top > 0 and val > 0:
            alpha = min(1.0, val / top)
            parts.append(Markup('<span class="hl" style="background:rgba(255,140,0,{:.2f})" '
                                'title="{:.3g}">{}</span>').format(alpha, val, tok))
        else:
            parts.append(escape(tok))
    return Markup(" ").join(parts)


def word_scores(tokens: Sequence[Sequence[str]], attributions: Sequence[np.ndarray],
                weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """Sum of positive attribution per lower-cased word over texts (the word cloud's sizes)."""
    scores: dict[str, float] = dict(weights or {})
    for toks, attr in zip(tokens, attributions, strict=True):
        for tok, val in zip(toks, np.asarray(attr, dtype=np.float64), strict=True):
            if val > 0:
                w = tok.lower().strip(".,!?;:\"'()")
                if w:
                    scores[w] = scores.get(w, 0.0) + float(val)
    return scores
