"""Logistic regression over named features and, optionally, hashed word n-grams of the question.

scikit-learn does the fitting (`LogisticRegression`, L2-penalised, bias unpenalised); what is
kept is plain numbers: per feature a training mean, a scale and a weight, a bias, and for the
text part the hashing settings plus one weight per hash bucket that training saw. A saved model
is therefore JSON that any reader can check, and predicting needs no pickle: the dense part is
arithmetic, the text part re-hashes the question with scikit-learn's stateless
`HashingVectorizer` under the recorded settings (murmurhash3: the same text gives the same
buckets on every machine and version).

Conventions, so that a missing value never fakes information:
- a feature that is None (or NaN/inf) for EVERY training question is unavailable: it is dropped
  and listed in `unavailable`, and later values of it are ignored;
- a value missing for SOME questions is imputed with the training mean, 0 once standardised, so
  it moves the prediction neither way;
- dense features are standardised by the mean and standard deviation of their observed values
  (a constant feature keeps scale 1 and gets weight 0 from the penalty).

The fit is deterministic (lbfgs from zero, no random step): the same data give the same weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from tourney.errors import DataError
from tourney.routers.features.documents import QUESTION_TEXT, DocumentForm

class CannotFit(DataError):
    """The dev data cannot fit a router (one outcome only, or none of the signals present).
    Signal selection skips such a candidate; anything else that goes wrong in a fit is a bug."""


FeatureRows = Sequence[Mapping[str, float | None]]
TEXT_FEATURES = 2 ** 18  # hash buckets: collisions are rare at a few thousand distinct n-grams
TEXT_MIN_DF = 2  # an n-gram seen in a single training question carries no pattern, only noise
# A document that holds the student's answer weighs each of its n-grams (n / 25) ** 0.25 times
# what a row of unit length gives it, n its count of distinct n-grams (HashedText.length_power /
# length_pivot): at unit length every word of a long answer is nearly mute, and answers run from a
# few words to hundreds. Measured on recorded MMLU-Pro outputs over random half-splits
# (benchmarks/RESULTS.md, issue 23, "answer words weighed by length").
DOCUMENT_LENGTH_POWER = 0.25
DOCUMENT_LENGTH_PIVOT = 25.0


def value(x: Any) -> float:
    """A feature value as float; None and non-finite values become NaN (missing)."""
    if x is None:
        return math.nan
    v = float(x)
    return v if math.isfinite(v) else math.nan


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # = 1 / (1 + e^-a), without overflow warnings


def fit_logistic(x: Any, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """(weights, bias) minimising sum log-loss + l2/2 |weights|^2 (bias unpenalised), by
    scikit-learn; x may be dense or scipy-sparse. Dense problems (a few dozen features) use
    Newton steps with Cholesky solves, which reach the optimum to float precision in a few
    steps; sparse text features (thousands of buckets) use Newton-CG (Hessian-free, a handful of
    steps). Neither penalises the bias. One BLAS thread: the
    problems are small, and threads only contend on a shared machine."""
    from scipy.sparse import issparse
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    if not l2 > 0:
        raise ValueError(f"l2 must be > 0 (it keeps separable data finite), got {l2}")
    y = np.asarray(y, dtype=float)
    if y.size == 0 or y.min() == y.max():
        raise CannotFit("fitting a router needs dev questions of both outcomes (right AND wrong)")
    sparse = issparse(x)
    model = LogisticRegression(C=1.0 / l2, tol=1e-6 if sparse else 1e-10, max_iter=10_000,
                               solver="newton-cg" if sparse else "newton-cholesky")
    with threadpool_limits(1):
        model.fit(x, y.astype(int))
    return model.coef_[0].astype(float), float(model.intercept_[0])


_ROWS: dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]] = {}  # text -> its row's (columns, values)
_MAX_ROWS = 200_000


def hashed_ngrams(texts: Sequence[str], n_features: int, ngram_max: int):
    """The hashed n-gram matrix (CSR) of a list of texts. Rows are kept per text: cross-validation
    hashes the same dev questions for every fold, and each is hashed once."""
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction.text import HashingVectorizer

    missing = [t for t in dict.fromkeys(texts) if (t, n_features, ngram_max) not in _ROWS]
    if missing:
        if len(_ROWS) + len(missing) > _MAX_ROWS:
            _ROWS.clear()
        vec = HashingVectorizer(n_features=n_features, ngram_range=(1, ngram_max), binary=True,
                                alternate_sign=False, norm="l2", lowercase=True)
        m = vec.transform(missing).tocsr()
        for i, t in enumerate(missing):
            lo, hi = m.indptr[i], m.indptr[i + 1]
            _ROWS[(t, n_features, ngram_max)] = (m.indices[lo:hi].copy(), m.data[lo:hi].copy())
    rows = [_ROWS[(t, n_features, ngram_max)] for t in texts]
    indptr = np.concatenate([[0], np.cumsum([r[0].size for r in rows])]).astype(np.int64)
    cols = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, dtype=np.int32)
    vals = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0)
    return csr_matrix((vals, cols, indptr), shape=(len(rows), n_features))


@dataclass(frozen=True)
class HashedText:
    """Word 1- and 2-grams of the question, hashed into `n_features` buckets, presence only. A text
    of n distinct n-grams weighs each n ** -length_power * length_pivot ** (length_power - 0.5):
    unit length times (n / length_pivot) ** (0.5 - length_power), so a text of `length_pivot`
    n-grams weighs as at unit length whatever the power (the defaults: unit length, as every file
    before the document weighting was written). `buckets[i]` carries `weights[i]`."""

    n_features: int = TEXT_FEATURES
    ngram_max: int = 2
    buckets: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    # the question text, or documents (type + question + the student's answer; the chosen option's
    # words written from issue 23 on, the check tokens later): routers.features.documents
    form: DocumentForm = QUESTION_TEXT
    length_power: float = 0.5
    length_pivot: float = 1.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.length_power <= 1.0 and self.length_pivot > 0.0):
            raise ValueError("fields 'length_power' and 'length_pivot': need 0 <= power <= 1 and pivot > 0")

    @property
    def unit_length(self) -> bool:
        return self.length_power == 0.5  # the pivot then changes nothing

    def matrix(self, texts: Sequence[str]):
        """(questions x n_features) sparse matrix: presence of each hashed n-gram, weighed by the
        text's length (class doc)."""
        from scipy.sparse import diags

        m = hashed_ngrams(list(texts), self.n_features, self.ngram_max)
        if self.unit_length:  # the rows as hashed: files written before read exactly as fitted
            return m
        n = np.maximum(np.diff(m.indptr), 1).astype(float)
        return (diags((n / self.length_pivot) ** (0.5 - self.length_power)) @ m).tocsr()

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """The text part of the logit for each question."""
        if not self.buckets:
            return np.zeros(len(texts))
        m = self.matrix(texts)[:, list(self.buckets)]
        return np.asarray(m @ np.asarray(self.weights, dtype=float)).ravel()


def common_buckets(matrix, min_df: int = TEXT_MIN_DF) -> np.ndarray:
    """Hash buckets present in at least `min_df` of the training questions."""
    df = np.asarray((matrix > 0).sum(axis=0)).ravel()
    return np.flatnonzero(df >= min_df)


@dataclass
class LinearModel:
    """P(label | features) = sigmoid(bias + weights . standardised features + text scores)."""

    features: list[str]  # the dense features used, in weight order
    mean: list[float]  # training mean of each (also its imputed value)
    scale: list[float]  # training standard deviation (1 for a constant feature)
    weights: list[float]
    bias: float
    l2: float = 1.0
    unavailable: list[str] = field(default_factory=list)  # asked for, but absent in training
    text: HashedText | None = None  # hashed question n-grams, when fitted with texts

    def __post_init__(self) -> None:
        d = len(self.features)
        for name in ("mean", "scale", "weights"):
            if len(getattr(self, name)) != d:
                raise ValueError(f"field {name!r}: expected {d} values, one per feature")
        if any(not s > 0 for s in self.scale):
            raise ValueError("field 'scale': every value must be positive")
        if self.text is not None and len(self.text.buckets) != len(self.text.weights):
            raise ValueError("field 'text': expected one weight per bucket")

    @classmethod
    def fit(cls, rows: FeatureRows, y: Sequence[bool] | np.ndarray, names: Sequence[str], *, l2: float = 1.0,
            texts: Sequence[str] | None = None, document: DocumentForm = QUESTION_TEXT) -> "LinearModel":
        """Fit on one mapping of feature values per question and its label; with `texts`, the
        question n-grams join the dense features in one regression (`document`: what the texts
        are, the question's or routers.features.documents in that form)."""
        if len(rows) != len(y):
            raise ValueError(f"{len(rows)} feature rows for {len(y)} labels")
        raw = np.array([[value(r.get(n)) for n in names] for r in rows], dtype=float).reshape(len(rows), len(names))
        present = ~np.isnan(raw).all(axis=0) if len(rows) else np.zeros(len(names), dtype=bool)
        used = [n for n, ok in zip(names, present) if ok]
        if not used and texts is None:
            raise CannotFit(f"none of the signals {list(names)} is available on this dev set")
        x = raw[:, present]
        mean = np.nanmean(x, axis=0) if used else np.zeros(0)
        scale = np.nanstd(x, axis=0) if used else np.zeros(0)
        scale[~(scale > 0)] = 1.0
        z = np.nan_to_num((x - mean) / scale, nan=0.0)
        text = None
        if texts is not None:
            from scipy.sparse import csr_matrix, hstack

            if len(texts) != len(rows):
                raise ValueError(f"{len(texts)} question texts for {len(rows)} feature rows")
            hashed = (HashedText(length_power=DOCUMENT_LENGTH_POWER, length_pivot=DOCUMENT_LENGTH_PIVOT)
                      if document.answer else HashedText())
            m = hashed.matrix(texts)
            keep = common_buckets(m)
            w, b = fit_logistic(hstack([csr_matrix(z), m[:, keep]]).tocsr(), np.asarray(y), l2)
            w_dense, w_text = w[:len(used)], w[len(used):]
            nz = np.flatnonzero(w_text != 0.0)
            text = HashedText(buckets=tuple(int(keep[i]) for i in nz), weights=tuple(float(w_text[i]) for i in nz),
                              form=document, length_power=hashed.length_power, length_pivot=hashed.length_pivot)
        else:
            w_dense, b = fit_logistic(z, np.asarray(y), l2)
        return cls(features=used, mean=mean.tolist(), scale=scale.tolist(), weights=[float(v) for v in w_dense],
                   bias=b, l2=l2, unavailable=[n for n, ok in zip(names, present) if not ok], text=text)

    @classmethod
    def constant(cls, y: Sequence[bool] | np.ndarray, names: Sequence[str] = ()) -> "LinearModel":
        """The model of a label that never varies on dev (a teacher right on every question): its
        rate, smoothed by half a question either way so it stays a probability below 1."""
        y = np.asarray(y, dtype=float)
        p = (y.sum() + 0.5) / (y.size + 1.0)
        return cls(features=[], mean=[], scale=[], weights=[], bias=float(np.log(p / (1 - p))), l2=1.0,
                   unavailable=list(names))

    @property
    def document_form(self) -> DocumentForm:
        """What its texts are (the question's text when it reads none)."""
        return QUESTION_TEXT if self.text is None else self.text.form

    def logit(self, rows: FeatureRows, texts: Sequence[str] | None = None) -> np.ndarray:
        x = np.array([[value(r.get(n)) for n in self.features] for r in rows], dtype=float)
        x = x.reshape(len(rows), len(self.features))
        z = np.nan_to_num((x - np.asarray(self.mean)) / np.asarray(self.scale), nan=0.0)
        out = self.bias + z @ np.asarray(self.weights, dtype=float)
        if self.text is not None:
            if texts is None or len(texts) != len(rows):
                raise ValueError("this model reads the question text: give one text per question")
            out = out + self.text.scores(texts)
        return out

    def predict(self, rows: FeatureRows, texts: Sequence[str] | None = None) -> np.ndarray:
        """P(label) for each question; missing values take the training mean."""
        return sigmoid(self.logit(rows, texts))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"features": list(self.features), "unavailable": list(self.unavailable),
                             "mean": list(self.mean), "scale": list(self.scale), "weights": list(self.weights),
                             "bias": self.bias, "l2": self.l2}
        if self.text is not None:
            d["text"] = {"n_features": self.text.n_features, "ngram_max": self.text.ngram_max,
                         "buckets": list(self.text.buckets), "weights": list(self.text.weights)}
            form = self.text.form  # the file's keys (routers.fitting.router_file): only the true ones
            for key, on in (("reads_answer", form.answer), ("reads_choice", form.choice), ("reads_checks", form.checks),
                            ("reads_guess", form.guess)):
                if on:
                    d["text"][key] = True
            if not self.text.unit_length:
                d["text"].update(length_power=self.text.length_power, length_pivot=self.text.length_pivot)
        return d
