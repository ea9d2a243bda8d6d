"""What every repsim config shares: a JSON round trip that refuses unknown fields, the
value checks the configs repeat (positive integers, integers), and config values as words.

A config is a dataclass that inherits :class:`Config`; nested configs (a training config's
``model`` and ``data``) convert themselves from dicts in their parent's ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any, TypeVar

C = TypeVar("C", bound="Config")


class Config:
    """Mixin for config dataclasses: ``to_dict``/``from_dict`` and ``to_json``/``from_json``.

    ``KIND`` names the config in error messages ("unknown train config field(s): ...").
    Tuples become lists in the dict; nested configs become dicts.
    """

    KIND = "config"

    def to_dict(self) -> dict:
        """The config as a plain JSON-able dict (tuples become lists, nested configs dicts).

        Returns
        -------
        dict
        """
        # Config is mixed into dataclasses only; mypy cannot see that through the mixin.
        return _plain(dataclasses.asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], values: dict) -> C:
        """The config a dict describes: the inverse of [to_dict][repsim.config.Config.to_dict].

        Parameters
        ----------
        values
            The fields (nested configs as dicts).

        Returns
        -------
        Config
            An instance of the class it is called on.

        Raises
        ------
        ValueError
            Naming any unknown field, and as the class's own checks.
        """
        return cls(**known_fields(cls, values, cls.KIND))

    def to_json(self) -> str:
        """The config as JSON text (what is saved with every artifact).

        Returns
        -------
        str
        """
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        """The config JSON text describes: the inverse of [to_json][repsim.config.Config.to_json].

        Parameters
        ----------
        text
            JSON of the config's fields.

        Returns
        -------
        Config
            An instance of the class it is called on.

        Raises
        ------
        ValueError
            As [from_dict][repsim.config.Config.from_dict].
        """
        return cls.from_dict(json.loads(text))


def config_defaults(cls: type[Config]) -> dict[str, Any]:
    """A config class's default values, as :meth:`Config.to_dict` would give them, without
    making an instance: its checks may import heavy modules (a dataset's builder), which a
    command line's ``--help`` should not. A nested config's defaults are a dict too."""
    values = {}
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        if item.default is not dataclasses.MISSING:
            values[item.name] = item.default
        elif isinstance(item.default_factory, type) and issubclass(item.default_factory, Config):
            values[item.name] = config_defaults(item.default_factory)
        elif item.default_factory is not dataclasses.MISSING:
            made = item.default_factory()
            values[item.name] = made.to_dict() if isinstance(made, Config) else made
    return values


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def known_fields(cls: type, values: dict, kind: str) -> dict:
    """``values`` if it is a dict whose every key is a field of ``cls``, else ValueError."""
    if not isinstance(values, dict):
        raise ValueError(f"{kind} config must be a JSON object, got {type(values).__name__}")
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown {kind} config field(s): {', '.join(unknown)}")
    return values


def is_int(value: Any) -> bool:
    """True for Python and NumPy integers, False for bools."""
    return not isinstance(value, bool) and isinstance(value, int)


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
    """ValueError unless ``value`` is a positive integer (or None when ``allow_none``)."""
    if value is None and allow_none:
        return
    if not is_int(value) or value <= 0:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a positive integer{extra}, got {value!r}")


def check_int(name: str, value: Any) -> None:
    """ValueError unless ``value`` is an integer (bools refused)."""
    if not is_int(value):
        raise ValueError(f"{name} must be an integer, got {value!r}")


def words(values: Iterable, unit: str = "") -> str:
    """Config values as plain words, for help texts and logs: ``(20.0, 10.0, 5.0), "dB"`` ->
    ``"20 10 5 dB"`` (numbers in their shortest form, never a Python list); "none" if empty."""
    text = " ".join(f"{value:g}" if isinstance(value, float) else str(value)
                    for value in values)
    if not text:
        return "none"
    return f"{text} {unit}" if unit else text
