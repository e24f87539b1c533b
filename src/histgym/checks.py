"""Bottom layer: validation of scalar options at the boundary of the public API.

No silent coercion: a string where a number is expected, ``True`` where an integer is
expected or ``2.7`` iterations raise :class:`~histgym.errors.InvalidOptionType`; a value of
the right type outside its range raises :class:`~histgym.errors.InvalidOption`.  Both name
the option.  NumPy scalars (``np.float32(0.1)``, ``np.int64(3)``) are accepted and returned
as Python ``float`` / ``int``.

Example:
    >>> from histgym.checks import check_float, check_int
    >>> check_float("action_scale", 0.1, low=0.0, low_open=True)
    0.1
    >>> check_int("max_steps", 64, low=1)
    64
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InvalidOption, InvalidOptionType, InvalidParameters, did_you_mean

__all__ = ["check_float", "check_int", "check_bool", "check_choice", "check_seed", "check_poi_value"]


def _type_error(name: str, value: Any, expected: str) -> InvalidOptionType:
    return InvalidOptionType(
        f"{name} must be {expected}, got {type(value).__name__} {value!r:.60}", option=name
    )


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a Python float, checked against ``[low, high]`` (open ends on request).

    Raises:
        InvalidOptionType: not a real number (``str``, ``bool``, ``None``, complex, arrays).
        InvalidOption: NaN, infinite (when ``finite``), or outside the range.
    """
    if type(value) is float:  # the common case, without the ABC checks (~1 us)
        x = value
    else:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise _type_error(name, value, "a real number")
        try:
            x = float(value)
        except OverflowError:
            msg = f"{name} = {value} is too large for a float64"
            raise InvalidOption(msg, option=name) from None
    if math.isnan(x) or (finite and math.isinf(x)):
        raise InvalidOption(f"{name} must be a finite number, got {x}", option=name)
    if low is not None and (x < low or (low_open and x == low)):
        op = ">" if low_open else ">="
        raise InvalidOption(f"{name} must be {op} {low}, got {x}", option=name)
    if high is not None and (x > high or (high_open and x == high)):
        op = "<" if high_open else "<="
        raise InvalidOption(f"{name} must be {op} {high}, got {x}", option=name)
    return x


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python int (``bool`` and floats such as ``2.0`` are refused).

    Raises:
        InvalidOptionType: not an integer.
        InvalidOption: outside ``[low, high]``.
    """
    if type(value) is not int and (
        isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)
    ):
        raise _type_error(name, value, "an integer")
    i = int(value)
    if (low is not None and i < low) or (high is not None and i > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidOption(f"{name} must be an integer {rng}, got {i}", option=name)
    return i


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a Python bool (only ``True``/``False``/``numpy.bool_``; not ``"yes"``, 1).

    Raises:
        InvalidOptionType: not a bool.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise _type_error(name, value, "True or False")
    return bool(value)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``choices`` (compared by type and value).

    Raises:
        InvalidOption: not a choice (with a "Did you mean" hint).
    """
    for c in choices:
        if value is c or (type(value) is type(c) and value == c):
            return c
    msg = f"unknown {name} {value!r}; expected one of {list(choices)}."
    hint = did_you_mean(str(value), [str(c) for c in choices]) if isinstance(value, str) else ""
    raise InvalidOption(msg + hint, option=name)


def check_seed(name: str, value: Any, *, generator: bool = False) -> Any:
    """A seed: ``None`` or an integer >= 0 (returned as ``int``), or a NumPy ``Generator``
    when ``generator`` is true.

    Raises:
        InvalidOptionType: any other type (``"abc"``, floats, bools).
        InvalidOption: a negative integer.
    """
    if value is None:
        return None
    if generator and isinstance(value, np.random.Generator):
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        expected = "None, an integer >= 0" + (" or a numpy.random.Generator" if generator else "")
        raise _type_error(name, value, expected)
    return check_int(name, value, low=0)


def check_poi_value(value: Any, name: str = "poi_value") -> float:
    """A tested POI value: a finite real number (``hypotest(nan)`` must not look excluded).

    Raises:
        InvalidOptionType: not a real number.
        InvalidParameters: NaN or infinite.
    """
    try:
        return check_float(name, value)
    except InvalidOptionType:
        raise
    except InvalidOption as err:
        raise InvalidParameters(str(err)) from None
