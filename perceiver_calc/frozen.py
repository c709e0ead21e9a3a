"""Immutable containers for the config's mappings (``id2label``, ``base_keys``, ``unknown_keys``).

A frozen pydantic model only forbids assigning its fields; a ``dict`` field can still be
changed in place (``config.id2label[5] = "x"``), and so can a list inside ``unknown_keys``.
:class:`FrozenDict` is a read-only :class:`~collections.abc.Mapping` (hashable when its values
are); :func:`deep_freeze` turns nested dicts and lists into FrozenDicts and tuples.
:func:`thaw` undoes it for ``model_dump``: the dump is plain dicts and lists, as before, so the
JSON output and the configs handed to transformers are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, PlainSerializer

from perceiver_calc.errors import InputError

__all__ = ["FrozenDict", "FrozenJsonObject", "FrozenLabels", "deep_freeze", "thaw"]

K = TypeVar("K")
V = TypeVar("V")

# Deeper than any JSON file may be (config.MAX_JSON_DEPTH is 64); a dict given to the library
# nested deeper is refused rather than frozen by a recursion that could exhaust the stack.
_MAX_DEPTH = 256


class FrozenDict(Mapping[K, V]):
    """A read-only dict: ``Mapping`` methods only, equal to a dict with the same items."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[K, V] | None = None) -> None:
        self._data: dict[K, V] = dict(data) if data is not None else {}

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (self._data,))


def deep_freeze(value: Any, _depth: int = 0) -> Any:
    """Dicts (any Mapping) -> FrozenDict, lists and tuples -> tuple, sets -> frozenset, nested."""
    if _depth > _MAX_DEPTH:
        raise InputError(f"a config value is nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, Mapping):
        return FrozenDict({k: deep_freeze(v, _depth + 1) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(deep_freeze(v, _depth + 1) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(deep_freeze(v, _depth + 1) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of :func:`deep_freeze` for dumping: FrozenDict -> dict, tuple -> list."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def _labels(value: Mapping[int, str]) -> FrozenDict[int, str]:
    return FrozenDict(value)


def _dump_labels(value: Mapping[int, str]) -> dict[int, str]:
    return dict(value)


def _object(value: Mapping[str, Any]) -> FrozenDict[str, Any]:
    frozen: FrozenDict[str, Any] = deep_freeze(value)
    return frozen


def _dump_object(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: thaw(v) for k, v in value.items()}


FrozenLabels = Annotated[
    Mapping[int, str],
    AfterValidator(_labels),
    PlainSerializer(_dump_labels, return_type=dict[int, str]),
]
"""``id2label``: validated as ``dict[int, str]``, kept as a FrozenDict, dumped as a dict."""

FrozenJsonObject = Annotated[
    Mapping[str, Any],
    AfterValidator(_object),
    PlainSerializer(_dump_object, return_type=dict[str, Any]),
]
"""``base_keys`` / ``unknown_keys``: any JSON values, deep-frozen, dumped as dicts and lists."""
