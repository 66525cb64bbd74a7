"""The generator's loss terms: what each is, and the one place they are registered.

A term is one module that defines ``TERM = LossTerm(...)``: its name, default weight,
typed options, one line of help and the extra generator passes it needs. Adding a
term is that file plus one line in :data:`TERM_MODULES`. The trainer reads weights
and options from :class:`engan.config.LossConfig` (``{name: {"weight": w, option: v}}``)
through :func:`resolve_terms`, so no trainer, CLI or config code changes for a new term.
"""
from __future__ import annotations

import dataclasses
import importlib
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

#: modules that define a ``TERM``, in the order terms are summed and logged
TERM_MODULES = (
    "engan.losses.gan",
    "engan.losses.sfp",
    "engan.losses.color",
    "engan.losses.exposure",
    "engan.losses.order",
    "engan.losses.identity",
    "engan.losses.highlight",
    "engan.losses.consistency",
)

#: extra generator passes a term may ask for (one forward over the concatenated batch)
PASSES = ("normal", "degraded")


@dataclass(frozen=True)
class NoOptions:
    """Options of a term that has none."""


@dataclass
class TermInputs:
    """What one training step gives every term (tensors NCHW RGB, generator outputs unclamped).

    Attributes:
        fake: G(``low_in``), the generator's output on its input.
        low: the un-darkened low-light crops (the content reference).
        low_in: the generator's input (``low``, darkened for some samples).
        normal: the normal-light crops (the discriminators' real images).
        same: G(``normal``), when a term needs the ``normal`` pass; else None.
        degraded_in: the degraded twin of ``low_in``, when a term needs the ``degraded`` pass; else None.
        degraded: G(``degraded_in``), likewise.
        critics: the discriminators and the step's local patches (:class:`Critics`).
    """

    fake: torch.Tensor
    low: torch.Tensor
    low_in: torch.Tensor
    normal: torch.Tensor
    critics: "Critics"
    same: torch.Tensor | None = None
    degraded_in: torch.Tensor | None = None
    degraded: torch.Tensor | None = None


@dataclass
class Critics:
    """The discriminators (frozen during the generator's step) and the step's patch offsets."""

    global_d: torch.nn.Module
    local_d: torch.nn.Module
    offsets: list[tuple[int, int]]
    patch_size: int


#: a term's value: a scalar, or named parts whose sum is the value (each part is logged)
TermValue = "torch.Tensor | dict[str, torch.Tensor]"


@dataclass(frozen=True)
class LossTerm:
    """A registered generator loss term.

    Attributes:
        name: the key in ``LossConfig``, ``--loss NAME=W`` and ``metrics.jsonl``.
        compute: ``(inputs, options, state) -> value`` (a scalar tensor or a dict of parts).
        summary: one line for ``engan train --help``.
        weight: default weight (0 = off unless a recipe switches it on).
        options: frozen dataclass of the term's options (defaults = its defaults).
        needs: extra generator passes (:data:`PASSES`).
        build: ``(options) -> nn.Module | None`` for state the term keeps (a frozen network), or None.
        prepare: ``(options, normal_images) -> options`` to fill options from the data at the start, or None.
        critics: the term reads the discriminators (when no active term does, they are not trained).
        paper: the term is one of EnlightenGAN's own losses.
    """

    name: str
    compute: Callable[[TermInputs, Any, Any], Any]
    summary: str
    weight: float = 0.0
    options: type = NoOptions
    needs: tuple[str, ...] = ()
    build: Callable[[Any], torch.nn.Module] | None = None
    prepare: Callable[[Any, Any], Any] | None = None
    critics: bool = False
    paper: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.needs) - set(PASSES)
        if unknown:
            raise ValueError(f"loss term {self.name}: unknown passes {sorted(unknown)}; known: {', '.join(PASSES)}")


class LossConfigError(ValueError):
    """A loss configuration names an unknown term or option, or gives a bad value."""


_TERMS: dict[str, LossTerm] | None = None


def registered_terms() -> dict[str, LossTerm]:
    """Every registered term by name, in :data:`TERM_MODULES` order."""
    global _TERMS
    if _TERMS is None:
        terms: dict[str, LossTerm] = {}
        for module in TERM_MODULES:
            term = importlib.import_module(module).TERM
            if term.name in terms:
                raise RuntimeError(f"loss term {term.name!r} is registered twice ({module})")
            terms[term.name] = term
        _TERMS = terms
    return _TERMS


def get_term(name: str) -> LossTerm:
    terms = registered_terms()
    if name not in terms:
        raise LossConfigError(f"unknown loss term {name!r}; registered: {', '.join(terms)}")
    return terms[name]


def make_options(term: LossTerm, values: Mapping[str, Any]) -> Any:
    """Build ``term.options`` from a mapping, refusing unknown names and mistyped values (clear messages)."""
    fields = {f.name: f for f in dataclasses.fields(term.options)}
    unknown = set(values) - set(fields)
    if unknown:
        known = ", ".join(fields) or "none"
        raise LossConfigError(f"loss term {term.name} has no option {', '.join(sorted(unknown))} (its options: {known})")
    hints = typing.get_type_hints(term.options)
    kwargs = {}
    for k, v in values.items():
        kwargs[k] = _coerce(f"{term.name}.{k}", v, _example_of(hints[k], fields[k].default))
    try:
        return term.options(**kwargs)
    except (TypeError, ValueError) as e:
        raise LossConfigError(f"loss term {term.name}: {e}") from None


def _example_of(hint: Any, default: Any) -> Any:
    """A value of the type an option holds: its default, or for ``X | None`` defaulting to None, ``X()``."""
    if default is not None:
        return default
    kinds = [k for k in typing.get_args(hint) if k is not type(None)]
    return kinds[0]() if kinds else None


def _coerce(where: str, value: Any, default: Any) -> Any:
    """Parse ``value`` (possibly command-line text) as the type of ``default``; None and "none" give None."""
    if value is None or (isinstance(value, str) and value.lower() == "none" and not isinstance(default, str)):
        return None
    if isinstance(default, str) or default is None:
        return value
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if kind is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(type(d)(x) for d, x in zip(default, items, strict=True)) if default else tuple(items)
        return kind(value)
    except (TypeError, ValueError):
        raise LossConfigError(f"{where}: {value!r} is not a valid {kind.__name__}") from None


@dataclass(frozen=True)
class ActiveTerm:
    """A term switched on for a run: its spec, weight and options."""

    term: LossTerm
    weight: float
    options: Any

    @property
    def name(self) -> str:
        return self.term.name


def _typed(loss: Mapping[str, Mapping[str, Any]]) -> list[ActiveTerm]:
    """Every registered term with its typed weight (registry default where not named) and options."""
    for name in loss:
        get_term(name)
    out = []
    for name, term in registered_terms().items():
        entry = dict(loss.get(name, {}))
        weight = _coerce(f"{name}.weight", entry.pop("weight", term.weight), 0.0)
        if weight < 0:
            raise LossConfigError(f"loss term {name}: weight {weight:g} is negative; use 0 to switch it off")
        out.append(ActiveTerm(term, float(weight), make_options(term, entry)))
    return out


def resolve_terms(loss: Mapping[str, Mapping[str, Any]]) -> list[ActiveTerm]:
    """The terms with a weight above 0, with typed options, in registry order.

    Raises:
        LossConfigError: an unknown term or option, a negative or non-numeric weight.
    """
    return [t for t in _typed(loss) if t.weight > 0]


def normalized_terms(loss: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{name: {"weight": w, **options}}`` for every registered term, typed and validated (for ``config.json``)."""
    return {t.name: {"weight": t.weight, **dataclasses.asdict(t.options)} for t in _typed(loss)}


def needed_passes(terms: list[ActiveTerm]) -> tuple[str, ...]:
    """The extra generator passes the active terms need, in :data:`PASSES` order."""
    needs = {p for t in terms for p in t.term.needs}
    return tuple(p for p in PASSES if p in needs)


def help_lines() -> list[tuple[str, str]]:
    """``(name (default weight), summary)`` rows for ``engan train --help``."""
    rows = []
    for name, t in registered_terms().items():
        opts = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(t.options))
        tag = "paper" if t.paper else "not in the paper"
        rows.append((f"{name} (default {t.weight:g})", f"{t.summary} [{tag}{'; options: ' + opts if opts else ''}]"))
    return rows
