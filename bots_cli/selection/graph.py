"""The k-NN graph of the knn plug-in (pooled.py), built once from the task table.

The space is a vector column of the table when the user has one (embeddings of the prompts, say),
otherwise TF-IDF vectors of the prompts' character 2-4-grams. Similarity is cosine; a neighbour's
weight is its similarity clipped at 0 (an unrelated task carries no evidence). scikit-learn does
the search (`pip install 'bots-cli[knn]'`); it is imported here only, so the selectors stay
numpy-only.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from bots_cli.checks import check_int
from bots_cli.errors import InvalidValue, UserError


def _sklearn() -> Any:
    try:
        import sklearn
    except ImportError:
        raise UserError("selector.implicit.name=knn needs scikit-learn for its neighbour search: "
                        "pip install 'bots-cli[knn]'") from None
    return sklearn


def knn_graph(vectors: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(neighbours, weights), both (N, k): each row's k most cosine-similar other rows.

    `vectors` is an (N, D) array or a scipy sparse matrix (TF-IDF). Rows that are all zeros have
    no direction: their neighbours get weight 0.
    """
    _sklearn()
    from sklearn.neighbors import NearestNeighbors

    n = vectors.shape[0]
    k = check_int("implicit.k", k, lo=1)
    if n < 2:
        raise InvalidValue("implicit.k: the knn plug-in needs at least two tasks")
    k = min(k, n - 1)
    search = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute")
    search.fit(vectors)
    dist, idx = search.kneighbors(vectors)  # (N, k+1); usually the row itself comes first
    # Drop each row itself (a duplicate may tie with it, so look for it rather than assume it
    # comes first): a stable sort puts the k other rows first, in order of similarity.
    others = np.argsort(idx == np.arange(n)[:, None], axis=1, kind="stable")[:, :k]
    neighbours = np.take_along_axis(idx, others, axis=1).astype(np.int64)
    weights = 1.0 - np.take_along_axis(dist, others, axis=1)
    np.clip(weights, 0.0, 1.0, out=weights)
    weights[~np.isfinite(weights)] = 0.0
    return neighbours, weights


def task_vectors(columns: Any, column: str | None) -> Any:
    """The vectors the graph is built on: `columns[column]` (one vector per task), or TF-IDF of
    `columns["prompt"]` when `column` is None."""
    if column is not None:
        if column not in columns:
            raise InvalidValue(f"implicit.column={column}: the task table has no such column "
                               f"(its columns: {', '.join(str(c) for c in columns)})")
        rows = [np.asarray(v, dtype=np.float64) for v in columns[column]]
        dims = {r.shape for r in rows}
        if len(dims) != 1 or len(next(iter(dims))) != 1:
            raise InvalidValue(f"implicit.column={column} must hold one vector of the "
                               f"same length per task, got shapes {sorted(dims)[:3]}")
        out = np.stack(rows)
        if not np.isfinite(out).all():
            raise InvalidValue(f"implicit.column={column} has NaN or inf values")
        return out
    if "prompt" not in columns:
        raise InvalidValue("implicit.name=knn without implicit.column needs the tasks' "
                           "prompts (TF-IDF); none were given")
    _sklearn()
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [p if isinstance(p, str) else json.dumps(p, sort_keys=True) for p in columns["prompt"]]
    # Character n-grams within words: prompts of any language, code and "12+7=" alike.
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    try:
        return vectorizer.fit_transform(texts)
    except ValueError as err:  # every prompt empty
        raise InvalidValue(f"implicit.name=knn: the prompts have no text to compare "
                           f"({err}); give a vector column in implicit.column") from None
