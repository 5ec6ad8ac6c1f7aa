"""Baselines without a neural network: the majority class, and TF-IDF + logistic regression
(see :mod:`course_lib.encoder`).
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .reviews import Reviews

__all__ = ["majority_baseline", "TfIdf", "tf_idf_baseline"]


# --------------------------------------------------------------------------- baselines

def majority_baseline(train: Reviews, test: Reviews) -> dict:
    """Predict the training set's most frequent label for every test review:
    ``{"accuracy": percent, "label": the label}`` (on the fine-food reviews: "great")."""
    label = int(torch.bincount(train.labels).argmax())
    return {"accuracy": 100.0 * int((test.labels == label).sum()) / len(test), "label": label}


_TOKEN = re.compile(r"(?u)\b\w\w+\b")          # scikit-learn's default token_pattern


class TfIdf:
    """TF-IDF features as scikit-learn's ``TfidfVectorizer`` defaults compute them: lower-cased
    tokens of 2+ word characters, n-grams of ``ngram_range``, raw counts times
    ``idf = ln((1 + n) / (1 + df)) + 1``, each row L2-normalised. Terms seen in fewer than
    ``min_df`` training documents are dropped. ``fit`` on training texts, ``transform`` to a sparse
    ``[N, F]`` float32 tensor."""

    def __init__(self, *, ngram_range: tuple[int, int] = (1, 2), min_df: int = 1):
        low, high = ngram_range
        if not 1 <= low <= high:
            raise ValueError(f"ngram_range must be (low, high) with 1 <= low <= high, got {ngram_range!r}")
        self.ngram_range, self.min_df = (low, high), min_df
        self.vocabulary: dict[str, int] = {}
        self.idf: torch.Tensor | None = None

    def terms(self, text: str) -> list[str]:
        tokens = _TOKEN.findall(text.lower())
        low, high = self.ngram_range
        return [" ".join(tokens[i:i + n]) for n in range(low, high + 1) for i in range(len(tokens) - n + 1)]

    def fit(self, texts: Sequence[str]) -> TfIdf:
        df = Counter(term for text in texts for term in set(self.terms(text)))
        kept = sorted(term for term, count in df.items() if count >= self.min_df)
        self.vocabulary = {term: i for i, term in enumerate(kept)}
        counts = torch.tensor([df[t] for t in kept], dtype=torch.float64)
        self.idf = (torch.log((1 + len(texts)) / (1 + counts)) + 1).float()
        return self

    def transform(self, texts: Sequence[str]) -> torch.Tensor:
        if self.idf is None:
            raise RuntimeError("call fit() first")
        rows, cols, values = [], [], []
        for r, text in enumerate(texts):
            counts = Counter(self.vocabulary[t] for t in self.terms(text) if t in self.vocabulary)
            rows += [r] * len(counts)
            cols += list(counts)
            values += list(counts.values())
        cols_t = torch.tensor(cols, dtype=torch.long)
        values_t = torch.tensor(values, dtype=torch.float32) * self.idf[cols_t]
        rows_t = torch.tensor(rows, dtype=torch.long)
        norms = torch.zeros(len(texts)).index_add_(0, rows_t, values_t ** 2).sqrt().clamp_min(1e-12)
        return torch.sparse_coo_tensor(torch.stack([rows_t, cols_t]), values_t / norms[rows_t],
                                       (len(texts), len(self.vocabulary)), check_invariants=True).coalesce()


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, C: float, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary L2 logistic regression by L-BFGS: minimises ``C * sum(log-loss) + ||w||^2 / 2`` (the bias
    not penalised; scikit-learn's ``LogisticRegression(C=C)``), divided by ``C * N`` for scale."""
    x = x.double()                                            # float64: converges as tightly as scikit-learn
    w = torch.zeros(x.shape[1], 1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    target = y.double().unsqueeze(1)
    optimizer = torch.optim.LBFGS([w, b], max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = torch.sparse.mm(x, w) + b
        loss = F.binary_cross_entropy_with_logits(logits, target) + (w * w).sum() / (2 * C * len(y))
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach(), b.detach()


def tf_idf_baseline(train: Reviews, test: Reviews, *, ngram_range: tuple[int, int] = (1, 2), min_df: int = 1,
                    C: float = 1.0, max_iter: int = 200) -> dict:
    """TF-IDF (:class:`TfIdf`, word ``ngram_range``-grams) + logistic regression (L2, ``C``), fitted on
    ``train``, scored on ``test``: ``{"accuracy", "train_accuracy" (percent), "features"}``. Binary
    labels only. The classical baseline notebook 08 sets its students against."""
    if set(train.labels.unique().tolist()) - {0, 1}:
        raise ValueError("tf_idf_baseline handles binary 0/1 labels only")
    features = TfIdf(ngram_range=ngram_range, min_df=min_df).fit(train.texts)
    x_train, x_test = features.transform(train.texts), features.transform(test.texts)
    w, b = _fit_logistic(x_train, train.labels, C, max_iter)

    def accuracy(x, y):
        return 100.0 * int((((torch.sparse.mm(x.double(), w) + b).squeeze(1) > 0).long() == y).sum()) / len(y)

    return {"accuracy": accuracy(x_test, test.labels), "train_accuracy": accuracy(x_train, train.labels),
            "features": len(features.vocabulary)}
