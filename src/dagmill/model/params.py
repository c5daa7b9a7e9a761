"""Typed parameters: defaults, parsing from strings, validation and a canonical form.

A parameter knows how to turn a value given in Python, or a string given on the
command line, in an environment variable or in YAML, into a typed value, and how to
write that value back as the canonical string used for task identity.

    >>> IntParameter().parse("3")
    3
    >>> BoolParameter().serialize(True)
    'True'
    >>> ListParameter().normalize([1, [2, 3]])
    (1, (2, 3))
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from dagmill.errors import ParameterError

__all__ = [
    "NO_DEFAULT",
    "BoolParameter",
    "ChoiceParameter",
    "DateHourParameter",
    "DateMinuteParameter",
    "DateParameter",
    "DateSecondParameter",
    "DateTimeParameter",
    "DictParameter",
    "EnumParameter",
    "FloatParameter",
    "FrozenDict",
    "IntParameter",
    "ListParameter",
    "OptionalParameter",
    "Parameter",
    "ParameterValueError",
    "TupleParameter",
]


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


class ParameterValueError(ValueError):
    """A value does not fit a parameter's type; the caller adds task and name."""


class FrozenDict(Mapping[str, Any]):
    """An immutable, hashable mapping (the normalised value of a DictParameter)."""

    __slots__ = ("_d", "_h")

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._d: dict[str, Any] = dict(data or {})
        self._h: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        if self._h is None:
            self._h = hash(tuple(sorted(self._d.items())))
        return self._h

    def __repr__(self) -> str:
        return repr(self._d)

    def to_dict(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self._d.items()}


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenDict({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, FrozenDict):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class Parameter:
    """A string parameter (the base of all parameter types).

    ``default`` makes it optional; ``significant=False`` leaves it out of the task's
    identity and output path (for settings that do not change what a task produces);
    ``description`` shows in ``--help`` and previews.
    """

    type_name: ClassVar[str] = "str"
    _counter: ClassVar[int] = 0

    def __init__(
        self,
        default: Any = NO_DEFAULT,
        *,
        significant: bool = True,
        description: str | None = None,
        positional: bool = True,
    ) -> None:
        self.significant = significant
        self.description = description
        self.positional = positional
        try:
            self.default = NO_DEFAULT if default is NO_DEFAULT else self.normalize(default)
        except ParameterValueError as e:
            raise ParameterError(_bad_default(self, default, e)) from None
        # declaration order, so that a task's parameters keep the order they were written in
        Parameter._counter += 1
        self._order = Parameter._counter

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT

    def parse(self, text: str) -> Any:
        """Parse a string (command line, environment, YAML) into a typed value."""
        return text

    def serialize(self, value: Any) -> str:
        """The canonical string of a value: what task identity and paths are made of."""
        return str(value)

    def normalize(self, value: Any) -> Any:
        """Check and convert a Python value; strings are parsed. None stays None, as in
        luigi (``IntParameter(default=None)`` is its way to say "optional")."""
        if value is None:
            return None
        if isinstance(value, str):
            return self.parse(value)
        return self._check(value)

    def from_slot(self, slot: str) -> Any:
        """The value of this parameter bound to a scheduled run's slot (``--slot-param``):
        ``slot`` is ISO 8601 in the job's timezone, "2022-03-01T10:05:00+01:00". A string
        parameter takes it as it is; date and date-time parameters take its local date or
        wall-clock time; any other type raises ParameterValueError."""
        return self.normalize(slot)

    def canonical(self, value: Any) -> str:
        """``serialize``, with luigi's "None" for a missing optional value."""
        return "None" if value is None else self.serialize(value)

    def _check(self, value: Any) -> Any:
        return value

    def __repr__(self) -> str:
        d = "" if not self.has_default else f"default={self.default!r}"
        return f"{type(self).__name__}({d})"


_ASSIGNED = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?::[^=]*)?=")


def _bad_default(param: Parameter, default: Any, error: Exception) -> str:
    """Name the task class and parameter of a bad default, from the class body being
    executed (the parameter is built before it is assigned, so it cannot know its name)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back  # type: ignore[assignment]
    what = f"{type(param).__name__}(default={default!r})"
    if frame is None:
        return f"{what}: {error}"
    import linecache

    where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
    owner = frame.f_locals.get("__qualname__") if "__module__" in frame.f_locals else None
    if owner is None:
        return f"{what}: {error} ({where})"
    m = _ASSIGNED.match(linecache.getline(frame.f_code.co_filename, frame.f_lineno))
    name = f" {m.group(1)!r}" if m else ""
    return f"{owner}: the default of parameter{name} is wrong: {error} ({where})"


class IntParameter(Parameter):
    type_name = "int"

    def parse(self, text: str) -> int:
        try:
            return int(text.strip())
        except ValueError:
            raise ParameterValueError(f"expects an integer, got {text!r}") from None

    def _check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ParameterValueError(f"expects an integer, got {type(value).__name__} {value!r}")
        return value


class FloatParameter(Parameter):
    type_name = "float"

    def parse(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            raise ParameterValueError(f"expects a number, got {text!r}") from None

    def _check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterValueError(f"expects a number, got {type(value).__name__} {value!r}")
        return float(value)


class BoolParameter(Parameter):
    type_name = "bool"
    _TRUE = frozenset({"true", "1", "yes", "y", "on"})
    _FALSE = frozenset({"false", "0", "no", "n", "off"})

    def __init__(self, default: Any = False, **kwargs: Any) -> None:
        super().__init__(default, **kwargs)

    def parse(self, text: str) -> bool:
        t = text.strip().lower()
        if t in self._TRUE:
            return True
        if t in self._FALSE:
            return False
        raise ParameterValueError(f"expects true or false, got {text!r}")

    def _check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ParameterValueError(
                f"expects true or false, got {type(value).__name__} {value!r}"
            )
        return value


class DateParameter(Parameter):
    type_name = "date"

    def parse(self, text: str) -> _dt.date:
        try:
            return _dt.date.fromisoformat(text.strip())
        except ValueError:
            raise ParameterValueError(f"expects a date like 2024-01-31, got {text!r}") from None

    def serialize(self, value: Any) -> str:
        return str(value.isoformat())

    def from_slot(self, slot: str) -> _dt.date:
        # the date as written: local to the job's timezone, not the UTC date of the instant
        return _slot_time(slot).date()

    def _check(self, value: Any) -> _dt.date:
        if isinstance(value, _dt.datetime):
            return value.date()
        if not isinstance(value, _dt.date):
            raise ParameterValueError(f"expects a date, got {type(value).__name__} {value!r}")
        return value


class DateTimeParameter(Parameter):
    """A datetime; canonical form is luigi's ``%Y-%m-%dT%H%M%S`` (ISO is accepted too)."""

    type_name = "datetime"
    _FORMAT = "%Y-%m-%dT%H%M%S"

    def parse(self, text: str) -> _dt.datetime:
        t = text.strip()
        try:
            return _dt.datetime.strptime(t, self._FORMAT)
        except ValueError:
            pass
        try:
            return _dt.datetime.fromisoformat(t)
        except ValueError:
            raise ParameterValueError(
                f"expects a date-time like 2024-01-31T12:00:00, got {text!r}"
            ) from None

    def serialize(self, value: Any) -> str:
        s = value.strftime(self._FORMAT)
        if value.tzinfo is not None:
            s += value.strftime("%z")
        return str(s)

    def from_slot(self, slot: str) -> _dt.datetime:
        # the local wall-clock time, naive like luigi's: a manual run given the same
        # time (--when 2022-03-01T10:05:00) is the same task, writing the same partition.
        # So the two slots of a repeated hour (fall back, an `every: 1h` job) are one task:
        # the second finds it complete
        return self._check(_slot_time(slot).replace(tzinfo=None))

    def _check(self, value: Any) -> _dt.datetime:
        if not isinstance(value, _dt.datetime):
            if isinstance(value, _dt.date):
                return _dt.datetime(value.year, value.month, value.day)
            raise ParameterValueError(f"expects a date-time, got {type(value).__name__} {value!r}")
        return value


class _TruncatedDateTime(DateTimeParameter):
    """A date-time kept to a precision (luigi's Date{Hour,Minute,Second}Parameter):
    finer parts are dropped, so 10:05 and 10:59 are one hourly task."""

    _KEEP: ClassVar[int] = 6  # year, month, day, hour, minute, second

    def parse(self, text: str) -> _dt.datetime:
        return self._check(super().parse(text))

    def _check(self, value: Any) -> _dt.datetime:
        v = super()._check(value)
        if self._KEEP <= 4:
            v = v.replace(minute=0)
        if self._KEEP <= 5:
            v = v.replace(second=0)
        return v.replace(microsecond=0)


class DateHourParameter(_TruncatedDateTime):
    """luigi's DateHourParameter: a date-time to the hour, canonical ``%Y-%m-%dT%H``."""

    type_name = "datehour"
    _FORMAT = "%Y-%m-%dT%H"
    _KEEP = 4


class DateMinuteParameter(_TruncatedDateTime):
    """luigi's DateMinuteParameter: to the minute, canonical ``%Y-%m-%dT%H%M``."""

    type_name = "dateminute"
    _FORMAT = "%Y-%m-%dT%H%M"
    _KEEP = 5


class DateSecondParameter(_TruncatedDateTime):
    """luigi's DateSecondParameter: to the second, canonical ``%Y-%m-%dT%H%M%S``."""

    type_name = "datesecond"
    _KEEP = 6


def _slot_time(slot: str) -> _dt.datetime:
    try:
        return _dt.datetime.fromisoformat(slot.strip())
    except ValueError:
        raise ParameterValueError(
            f"expects a slot like 2022-03-01T10:05:00+01:00, got {slot!r}"
        ) from None


class EnumParameter(Parameter):
    """A member of ``enum``; parsed from and serialized as the member's name."""

    type_name = "enum"

    def __init__(self, default: Any = NO_DEFAULT, *, enum: type[enum.Enum], **kwargs: Any) -> None:
        self.enum = enum
        super().__init__(default, **kwargs)

    def parse(self, text: str) -> enum.Enum:
        try:
            return self.enum[text.strip()]
        except KeyError:
            names = ", ".join(m.name for m in self.enum)
            raise ParameterValueError(f"expects one of {names}, got {text!r}") from None

    def serialize(self, value: Any) -> str:
        return str(value.name)

    def _check(self, value: Any) -> enum.Enum:
        if not isinstance(value, self.enum):
            names = ", ".join(m.name for m in self.enum)
            raise ParameterValueError(f"expects one of {names}, got {value!r}")
        return value


class _JsonParameter(Parameter):
    def parse(self, text: str) -> Any:
        try:
            return self._check(json.loads(text))
        except json.JSONDecodeError as e:
            raise ParameterValueError(f"expects JSON ({e.msg}), got {text!r}") from None

    def serialize(self, value: Any) -> str:
        # luigi's separators, so task ids match d6tflow's data folders; keys sorted, so
        # equal mappings are one task whatever order they were written in
        return json.dumps(_thaw(value), sort_keys=True, default=str)


class ListParameter(_JsonParameter):
    """A list (JSON on the command line); normalised to a tuple so tasks stay hashable."""

    type_name = "list"

    def _check(self, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise ParameterValueError(f"expects a list, got {type(value).__name__} {value!r}")
        result: tuple[Any, ...] = _freeze(value)
        return result


class DictParameter(_JsonParameter):
    """A mapping (JSON on the command line); normalised to an immutable FrozenDict."""

    type_name = "dict"

    def _check(self, value: Any) -> FrozenDict:
        if not isinstance(value, Mapping):
            raise ParameterValueError(f"expects a mapping, got {type(value).__name__} {value!r}")
        result: FrozenDict = _freeze(value)
        return result


class TupleParameter(ListParameter):
    """luigi's TupleParameter: a list or tuple, normalised to a tuple."""

    type_name = "tuple"


class OptionalParameter(Parameter):
    """luigi's OptionalParameter: a string or None (the default)."""

    def __init__(self, default: Any = None, **kwargs: Any) -> None:
        super().__init__(default, **kwargs)


class ChoiceParameter(Parameter):
    """luigi's ChoiceParameter: one of ``choices`` (parsed with ``var_type``, default str)."""

    type_name = "choice"

    def __init__(
        self,
        default: Any = NO_DEFAULT,
        *,
        choices: Any = (),
        var_type: type = str,
        **kwargs: Any,
    ) -> None:
        self.choices = tuple(choices)
        self.var_type = var_type
        if not self.choices:
            raise ParameterError("ChoiceParameter needs choices=[...]")
        super().__init__(default, **kwargs)

    def parse(self, text: str) -> Any:
        try:
            value = self.var_type(text.strip())
        except (TypeError, ValueError):
            value = text
        return self._check(value)

    def _check(self, value: Any) -> Any:
        if value not in self.choices:
            names = ", ".join(map(repr, self.choices))
            raise ParameterValueError(f"expects one of {names}, got {value!r}")
        return value
