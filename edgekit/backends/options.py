"""Typed backend options: `--option KEY=VALUE` parsed into a small dataclass per backend.

ONNX Runtime's quantizer takes an `extra_options` string dict whose typos pass silently; edgekit
instead gives every backend an `Options` dataclass (a subclass of `BackendOptions`). Its fields are
the only keys accepted; values are converted by the field's type (bool, int, float, str, list of
str, a JSON object, a `Literal` of choices, or `X | None`); every mistake is one BadInput line that
names the option, what it takes and the closest valid key.

    @dataclass
    class Options(BackendOptions):
        preset: Literal["auto", "performance", "mixed"] = field(
            default="auto", metadata={"help": "NNCF preset (auto: chosen from the graph)"})
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar, Union

from edgekit.errors import BadInput, suggest

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

OptionsT = TypeVar("OptionsT", bound="BackendOptions")


def split_items(items: Iterable[str]) -> dict[str, str]:
    """`["k=v", ...]` -> {k: v}; malformed or repeated keys are BadInput."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(f"--option '{item}' must be KEY=VALUE")
        if key in out:
            raise BadInput(f"--option {key} is given twice ({out[key]!r} and {value!r}); give it once")
        out[key] = value
    return out


@dataclasses.dataclass
class BackendOptions:
    """Base of every backend's options. A backend without options keeps this empty class."""

    # the keys the user set (private: not an option)
    _given: frozenset[str] = dataclasses.field(default=frozenset(), init=False, repr=False, compare=False)

    @classmethod
    def _fields(cls) -> list[dataclasses.Field[Any]]:
        return [f for f in dataclasses.fields(cls) if not f.name.startswith("_")]

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in cls._fields()]

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """One row per option (key, type, default, help): for `--help` text and documentation."""
        hints = typing.get_type_hints(cls)
        rows = []
        for f in cls._fields():
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            rows.append(
                {
                    "key": f.name,
                    "type": _type_name(hints[f.name]),
                    "default": default,
                    "help": f.metadata.get("help", ""),
                }
            )
        return rows

    @classmethod
    def parse(
        cls: type[OptionsT], items: Iterable[str] | Mapping[str, Any] | None, backend: str = ""
    ) -> OptionsT:
        """Options from `KEY=VALUE` strings or a mapping (strings are converted, typed values checked).
        Unknown keys, bad values and repeated keys raise BadInput."""
        if items is None:
            raw: Mapping[str, Any] = {}
        elif isinstance(items, Mapping):
            raw = items
        else:
            raw = split_items(items)
        who = f"the {backend} backend" if backend else "this backend"
        hints = typing.get_type_hints(cls)
        valid = cls.keys()
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in hints or key not in valid:
                if not valid:
                    raise BadInput(f"--option {key}: not an option of {who}, which takes no --option")
                raise BadInput(
                    f"--option {key}: not an option of {who}.{suggest(key, valid)} Options: {', '.join(valid)}"
                )
            values[key] = _convert(key, value, hints[key])
        options = cls(**values)
        options._given = frozenset(values)
        return options

    def given(self) -> dict[str, Any]:
        """Only the options the user set, typed (the manifest records these)."""
        return {f.name: getattr(self, f.name) for f in self._fields() if f.name in self._given}

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in self._fields()}


# ---- conversion -----------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or none"
    if origin is list:
        return "comma-separated list"
    if origin is dict or tp is dict:
        return "JSON object"
    return getattr(tp, "__name__", str(tp))


def _convert(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    shown = f"--option {key}={value}" if isinstance(value, str) else f"option {key}={value!r}"
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        errors = []
        for arg in args:
            try:
                return _convert(key, value, arg)
            except BadInput as exc:
                errors.append(str(exc))
        raise BadInput(errors[0] if len(errors) == 1 else f"{shown}: {key} takes {_type_name(tp)}")
    if origin is Literal:
        choices = [str(c) for c in typing.get_args(tp)]
        text = str(value).strip().lower()
        if text not in choices:
            raise BadInput(f"{shown}: valid values are {', '.join(choices)}")
        return text
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise BadInput(f"{shown}: {key} is true or false (1/0, yes/no, on/off)")
    if tp in (int, float):
        if isinstance(value, bool):
            raise BadInput(f"{shown}: {key} takes {'an integer' if tp is int else 'a number'}")
        if isinstance(value, int | float) and (tp is float or isinstance(value, int)):
            return tp(value)
        try:
            return tp(str(value).strip())
        except ValueError:
            raise BadInput(f"{shown}: {key} takes {'an integer' if tp is int else 'a number'}") from None
    if tp is str:
        if not isinstance(value, str):
            raise BadInput(f"{shown}: {key} takes a string")
        return value
    if origin is list:
        if isinstance(value, list | tuple):
            return [str(v) for v in value]
        return [part.strip() for part in str(value).split(",") if part.strip()]
    if origin is dict or tp is dict:
        if isinstance(value, Mapping):
            return dict(value)
        try:
            parsed = json.loads(str(value))
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise BadInput(f"{shown}: {key} takes a JSON object, e.g. --option '{key}={{\"name\": value}}'")
        return parsed
    raise TypeError(f"option {key}: unsupported field type {tp!r}")  # a programming error
