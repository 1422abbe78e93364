"""From a validated ROUTER.json (routers.fitting.router_file) to the objects that route.

Only numbers, names and hash buckets cross: every model is rebuilt from its fields, nothing is
unpickled or imported by name.
"""
from __future__ import annotations


from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.fitting.combined import CombinedRouter
from tourney.routers.fitting.gain import GainRouter
from tourney.routers.fitting.linear import HashedText, LinearModel
from tourney.routers.evaluation.metrics import CascadeFigures
from tourney.routers.policies.pertype import GainMap, TypeCalibration
from tourney.routers.policies.policy import PreRouting
from tourney.routers.features.documents import DocumentForm
from tourney.routers.features.signals import QUESTION_FEATURES
from tourney.routers.fitting.router_file import (
    FiguresSchema, GainSchema, GuesserSchema, IsotonicSchema, LinearSchema, LogisticSchema, PriorSchema,
    RouterFileSchema,
)
from tourney.routers.features.option_guess import OptionGuesser
from tourney.routers.features.prior import DifficultyPrior


def _threshold(v: float) -> float:
    return float(v)  # the schema has made "inf" / "-inf" floats already


def linear_from_schema(m: LinearSchema) -> LinearModel:
    text = None
    if m.text is not None:
        text = HashedText(n_features=m.text.n_features, ngram_max=m.text.ngram_max,
                          buckets=tuple(m.text.buckets), weights=tuple(m.text.weights),
                          form=DocumentForm(m.text.reads_answer, m.text.reads_choice, m.text.reads_checks,
                                            m.text.reads_guess),
                          length_power=m.text.length_power, length_pivot=m.text.length_pivot)
    return LinearModel(features=list(m.features), mean=list(m.mean), scale=list(m.scale), weights=list(m.weights),
                       bias=m.bias, l2=m.l2, unavailable=list(m.unavailable), text=text)


def prior_from_schema(m: PriorSchema | None) -> DifficultyPrior | None:
    return None if m is None else DifficultyPrior(linear_from_schema(m.model), m.n_rows, tuple(m.runs))


def gain_from_schema(m: GainSchema) -> GainRouter:
    split = lambda x: None if x is None else linear_from_schema(x)  # noqa: E731
    return GainRouter(linear_from_schema(m.student), linear_from_schema(m.teacher), primary=m.primary,
                      primary_step=m.primary_step, prior=prior_from_schema(m.prior), discord=split(m.discord),
                      winner=split(m.winner), guesser=guesser_from_schema(m.guesser))


def guesser_from_schema(m: GuesserSchema | None) -> OptionGuesser | None:
    if m is None:
        return None
    return OptionGuesser(buckets=tuple(m.buckets), weights=tuple(m.weights), n_features=m.n_features,
                         questions=m.questions)


def model_from_schema(m: str | LogisticSchema | GainSchema):
    if isinstance(m, str):
        return m
    if isinstance(m, LogisticSchema):
        return CombinedRouter(linear_from_schema(m), primary=m.primary, primary_step=m.primary_step,
                              prior=prior_from_schema(m.prior))
    return gain_from_schema(m)


def _figures(f: FiguresSchema | None) -> CascadeFigures | None:
    if f is None:
        return None
    return CascadeFigures(n=f.n, teacher_share=f.teacher_share, accuracy=f.accuracy,
                          latency_mean_s=f.latency_mean_s, latency_p95_s=f.latency_p95_s)


def _map(m: IsotonicSchema) -> GainMap:
    return GainMap(tuple(m.x), tuple(m.y))


def router_from_schema(r: RouterFileSchema, where: str = "router") -> CalibratedRouter:
    """The router a validated file describes; DataError `where: ...` for cross-field faults."""
    from tourney.errors import DataError
    from tourney.routers.fitting.scores import question_only

    try:
        per_type = None
        if r.per_type is not None:
            p = r.per_type
            per_type = TypeCalibration(_map(p.all_types), {k: _map(v) for k, v in p.by_type.items()},
                                       p.min_questions, p.center, p.spread)
        pre = None
        if r.pre is not None:
            first = gain_from_schema(r.pre.model)
            if not question_only(first):
                raise DataError(f"{where}: field 'pre.model': a first stage reads the question only, this one reads "
                                f"{[f for f in first.features if f not in QUESTION_FEATURES]}")
            pre = PreRouting(first, _threshold(r.pre.teacher_below), _threshold(r.pre.student_from),
                             r.pre.teacher_share, r.pre.student_share)
        return CalibratedRouter(
            target_kind=r.target_kind, target_value=r.target_value, threshold=_threshold(r.threshold),
            signals=list(r.signals), model=model_from_schema(r.model), dev=_figures(r.dev),
            heldout=_figures(r.heldout), relative=r.relative, latency_stat=r.latency_stat,
            split_ties=r.split_ties, per_type=per_type, pre=pre)
    except DataError:
        raise
    except ValueError as e:  # cross-field rules the schema leaves to the objects
        raise DataError(f"{where}: {e}") from None
