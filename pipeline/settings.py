"""The one configuration mechanism: dataclasses whose fields carry their constraints.

Pipeline sections, the baseline's training config and `voxhear synth`'s options are all plain
dataclasses built and checked here, so a typo gets the same did-you-mean message everywhere and
a bound is written once, beside the field it bounds:

    threshold: float = setting(0.6, gt=0, lt=2)
    detector: str = setting("yunet", choices=("yunet", "insightface"))

Rules that tie two fields together stay in a small `check(self)` method of the class. A key that
was renamed is refused with the new name (`RENAMED = {"old": "new"}` on the class): silently
accepting an old key is how a long run ends up with default thresholds.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """The configuration is invalid; the message says which key and why."""


@dataclass(frozen=True)
class Bounds:
    """Constraints of one field; every one that is set must hold."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None
    even: bool = False
    # For lists: constraints apply to every item, and the list needs at least this many items.
    min_items: int = 0

    def problem(self, value: Any) -> str | None:
        """Why `value` breaks these bounds, or None."""
        if isinstance(value, list):
            if len(value) < self.min_items:
                return f"needs at least {self.min_items} item(s)"
            for item in value:
                item_problem = dataclasses.replace(self, min_items=0).problem(item)
                if item_problem:
                    return f"item {item!r} {item_problem}"
            return None
        if value is None:
            return None
        if self.choices is not None and value not in self.choices:
            return "must be one of " + ", ".join(repr(c) for c in self.choices)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                return "must be a finite number"
            if self.ge is not None and not value >= self.ge:
                return f"must be >= {self.ge:g}"
            if self.gt is not None and not value > self.gt:
                return f"must be > {self.gt:g}"
            if self.le is not None and not value <= self.le:
                return f"must be <= {self.le:g}"
            if self.lt is not None and not value < self.lt:
                return f"must be < {self.lt:g}"
            if self.even and value % 2:
                return "must be even"
        return None

    def describe(self) -> str:
        """The constraint in words, for `voxhear config --explain` and the docs."""
        parts = []
        if self.choices is not None:
            parts.append("one of " + "/".join(str(c) for c in self.choices))
        low = f">= {self.ge:g}" if self.ge is not None else f"> {self.gt:g}" if self.gt is not None else ""
        high = f"<= {self.le:g}" if self.le is not None else f"< {self.lt:g}" if self.lt is not None else ""
        parts += [p for p in (low, high) if p]
        if self.even:
            parts.append("even")
        return ", ".join(parts)


def setting(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[Any] | None = None,
    even: bool = False,
    min_items: int = 0,
) -> Any:
    """A dataclass field with its constraints (checked by `check_config`)."""
    bounds = Bounds(
        ge=ge,
        gt=gt,
        le=le,
        lt=lt,
        choices=tuple(choices) if choices is not None else None,
        even=even,
        min_items=min_items,
    )
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={"bounds": bounds})
    return dataclasses.field(default=default, metadata={"bounds": bounds})


def did_you_mean(key: str, known: Sequence[str], prefix: str = "") -> str:
    """ " (did you mean 'PREFIX+closest'?)" for a mistyped key, or "" when nothing is close."""
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def bounds_of(cls: type, name: str) -> Bounds | None:
    """The declared bounds of field `name` of dataclass `cls`."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("bounds")
    return None


def require(condition: bool, key: str, message: str, error: type[ConfigError] = ConfigError) -> None:
    """For the cross-field rules in a class's `check()`."""
    if not condition:
        raise error(f"config key '{key}' {message}")


def check_config(obj: Any, prefix: str = "", error: type[ConfigError] = ConfigError) -> None:
    """Check every field's bounds (recursing into nested sections), then the class's own `check()`."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_config(value, f"{prefix}{f.name}.", error)
            continue
        bounds = f.metadata.get("bounds")
        problem = bounds.problem(value) if bounds else None
        if problem:
            raise error(f"config key '{prefix}{f.name}' {problem} (got {value!r})")
    own_check = getattr(obj, "check", None)
    if callable(own_check):
        own_check()


def build_config(cls: type, data: Any, prefix: str = "", error: type[ConfigError] = ConfigError) -> Any:
    """Build dataclass `cls` from plain data (YAML, JSON, overrides), typed and strict.

    Unknown keys get a did-you-mean, renamed keys name their new key, and values must have the
    field's type (an int is accepted for a float; nothing is parsed from strings here).
    """
    if not isinstance(data, dict):
        raise error(f"config key '{prefix.rstrip('.') or '<top>'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    renamed: dict[str, str] = getattr(cls, "RENAMED", {})
    kwargs = {}
    for key, value in data.items():
        if key in renamed:
            raise error(f"config key '{prefix}{key}' was renamed to '{prefix}{renamed[key]}'")
        if key not in names:
            hint = did_you_mean(key, names, prefix)
            raise error(f"unknown config key '{prefix}{key}'{hint}; known: {', '.join(names)}")
        kwargs[key] = coerce(hints[key], value, f"{prefix}{key}", error)
    return cls(**kwargs)


def coerce(tp: Any, value: Any, key: str, error: type[ConfigError] = ConfigError) -> Any:
    """`value` as type `tp`, or a ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return coerce(args[0], value, key, error)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build_config(tp, value if value is not None else {}, f"{key}.", error)
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise error(f"config key '{key}' must be a list")
        (item_type,) = typing.get_args(tp)
        return [coerce(item_type, v, f"{key}[{i}]", error) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise error(f"config key '{key}' must be a mapping")
        _, item_type = typing.get_args(tp)
        return {str(k): coerce(item_type, v, f"{key}.{k}", error) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise error(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise error(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if value is None or isinstance(value, (dict, list)):
            raise error(f"config key '{key}' must be a string, got {value!r}")
        return str(value)
    if isinstance(tp, type) and tp.__name__ == "Path":
        if not isinstance(value, (str, tp)):
            raise error(f"config key '{key}' must be a path, got {value!r}")
        return tp(value)
    raise error(f"config key '{key}' has an unsupported type {tp}")


def apply_override(data: dict[str, Any], item: str, error: type[ConfigError] = ConfigError) -> None:
    """Apply one dotted `key=value` (value parsed as a YAML scalar or list) to nested `data`."""
    import yaml

    if "=" not in item:
        raise error(f"override '{item}' is not of the form key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise error(f"override '{item}': '{part}' is not a section")
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        # YAML 1.1 reads "1e-3" (no dot) as a string; on a command line it means the number.
        value = float(value)
    node[parts[-1]] = value


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
