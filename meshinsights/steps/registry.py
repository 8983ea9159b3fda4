"""The step registry: ``@step`` binds a pure function to the tables it reads and writes.

Wiring is checked at registration (kedro-style): every declared input must be a parameter of
the function, and every other parameter must have a default or be one the runner
supplies (``window``, ``machine_id``, ``resources``). Third-party
steps register through the ``meshinsights.steps`` entry-point group.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import logging
import reprlib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from meshinsights.errors import StepError
from meshinsights.model import check_table_name

__all__ = [
    "StepSpec",
    "step",
    "get_step",
    "registered_steps",
    "ENTRY_POINT_GROUP",
    "Resources",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "meshinsights.steps"
#: Parameters the runner supplies itself rather than from a table or the config: the window,
#: the machine, and ``resources`` — the I/O clients a step needs (e.g. ``genai_client``),
#: injected by whoever runs it (a test passes fakes), so the function itself stays pure.
RUNTIME_PARAMS = frozenset({"window", "machine_id", "resources"})
#: What the runner passes as ``resources``: named clients (read-only for the step).
Resources = Mapping[str, Any]

_REGISTRY: dict[str, StepSpec] = {}
_entry_points_loaded = False


@dataclass(frozen=True)
class StepSpec:
    """A registered step: the function plus its declared inputs, output and output schema."""

    name: str
    func: Callable[..., Any]
    inputs: tuple[str, ...]
    output: str
    schema: pa.Schema | None = None
    description: str = ""
    param_defaults: dict[str, Any] = field(default_factory=dict)
    optional: frozenset[str] = frozenset()

    def bind_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Config params validated against the function's annotations, merged over defaults.

        An unknown name is an error naming the known ones (and the closest); a wrongly typed
        or out-of-range value (``Annotated[float, Field(gt=0, lt=1)]``) names the parameter,
        the value and the rule, so configs fail when they load, not deep inside a run.
        """
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.param_defaults))
        if unknown:
            close = difflib.get_close_matches(unknown[0], self.param_defaults, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise StepError(
                f"step {self.name!r} has no parameter(s) {unknown}.{hint} Its parameters are "
                f"{sorted(self.param_defaults)}"
            )
        if not params:
            return dict(self.param_defaults)
        try:
            checked = _params_model(self.func, tuple(self.param_defaults)).model_validate(params)
        except ValidationError as exc:
            raise StepError(f"step {self.name!r}: " + _param_errors(exc)) from None
        return {**self.param_defaults, **{k: getattr(checked, k) for k in params}}

    @property
    def wants(self) -> frozenset[str]:
        return frozenset(inspect.signature(self.func).parameters) & RUNTIME_PARAMS


@functools.cache
def _params_model(func: Callable[..., Any], names: tuple[str, ...]) -> type[BaseModel]:
    """A pydantic model of the function's configurable parameters (built on first use).

    An annotation that cannot be resolved is taken as ``Any`` rather than failing: the
    signature check at registration already passed, and a plugin's type-only imports must
    not make its step unusable.
    """
    sig = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:  # NameError for type-only imports: resolve what can be resolved
        hints = {}
        for name in names:
            with contextlib.suppress(Exception):
                hints[name] = typing.get_type_hints(
                    _Probe(sig.parameters[name].annotation, func), include_extras=True
                )["value"]
    fields: dict[str, Any] = {
        name: (hints.get(name, Any), sig.parameters[name].default) for name in names
    }
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{func.__name__}_params",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )


class _Probe:
    """A stand-in carrying one annotation and the function's globals, for get_type_hints."""

    def __init__(self, annotation: Any, func: Callable[..., Any]) -> None:
        self.__annotations__ = {"value": annotation}
        self.__globals__ = getattr(func, "__globals__", {})
        self.__module__ = func.__module__


def _param_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"])
        value = reprlib.repr(err.get("input"))
        parts.append(f"parameter {name} = {value}: {err['msg']}")
    return "; ".join(parts) + " — fix the value in the pipeline's params or the machine's overrides"


def _check_signature(func: Callable[..., Any], inputs: tuple[str, ...]) -> dict[str, Any]:
    sig = inspect.signature(func)
    params = sig.parameters
    missing = [name for name in inputs if name not in params]
    if missing:
        raise TypeError(
            f"step {func.__qualname__}: declared input(s) {missing} are not parameters of the "
            f"function; its signature is {func.__name__}{sig}"
        )
    defaults: dict[str, Any] = {}
    for name, p in params.items():
        if name in inputs or name in RUNTIME_PARAMS:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"step {func.__qualname__}: *args/**kwargs are not allowed ({name})")
        if p.default is p.empty:
            raise TypeError(
                f"step {func.__qualname__}: parameter {name!r} is neither a declared input "
                f"{list(inputs)} nor has a default; give it a default or declare it as an input"
            )
        defaults[name] = p.default
    return defaults


def step(
    *,
    inputs: list[str],
    output: str,
    name: str | None = None,
    schema: pa.Schema | None = None,
    optional: list[str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a pure function as a step reading ``inputs`` tables and writing ``output``.

    Inputs named in ``optional`` arrive as an empty frame when their table does not exist yet
    (e.g. a step reading its own previous output as a cache). The function is returned
    unchanged, so it stays directly callable in tests.
    """

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        ins = tuple(inputs)
        for table in (*ins, output):
            check_table_name(table)
        defaults = _check_signature(func, ins)
        step_name = name or func.__name__
        doc = (inspect.getdoc(func) or "").splitlines()
        opt = frozenset(optional or ())
        if not opt <= set(ins):
            raise TypeError(
                f"step {func.__qualname__}: optional {sorted(opt - set(ins))} "
                f"are not among its inputs {list(ins)}"
            )
        spec = StepSpec(step_name, func, ins, output, schema, doc[0] if doc else "", defaults, opt)
        previous = _REGISTRY.get(step_name)
        if (
            previous is not None
            and previous.func is not func
            and (
                previous.func.__module__,
                previous.func.__qualname__,
            )
            != (func.__module__, func.__qualname__)
        ):
            raise StepError(
                f"step name {step_name!r} is already registered by {previous.func.__module__}."
                f"{previous.func.__qualname__}; pick another name with @step(name=...)"
            )
        _REGISTRY[step_name] = spec
        return func

    return decorator


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()  # importing the module runs its @step decorators
        except Exception:  # a broken plugin must not hide every other step
            logger.exception("could not load step plugin %s (%s)", ep.name, ep.value)


def registered_steps() -> dict[str, StepSpec]:
    """All steps, including those from installed plugins."""
    _load_entry_points()
    return dict(_REGISTRY)


def get_step(name: str) -> StepSpec:
    """The step called ``name``; an unknown name lists the known ones and the closest match."""
    steps = registered_steps()
    if name in steps:
        return steps[name]
    close = difflib.get_close_matches(name, steps, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise StepError(f"unknown step {name!r}.{hint} Known steps: {', '.join(sorted(steps))}")
