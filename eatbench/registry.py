"""A small generic name -> class registry (one per family: schedulers, backends, ...)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """Raised when a registry is asked for a name it does not hold."""


class Registry(Generic[T]):
    """Maps a config choice name (the YAML file stem) to the class that implements it.

    :param family: what the registry holds, used in error messages ("scheduler").
    """

    def __init__(self, family: str) -> None:
        self.family = family
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: ``@SCHEDULERS.register("greedy")``."""

        def add(cls: type[T]) -> type[T]:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._classes[name] = cls
            cls.registry_name = name  # type: ignore[attr-defined]
            return cls

        return add

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get_class(self, name: str) -> type[T]:
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.family} {name!r}; allowed: {', '.join(self.names())}") from None

    def create(self, name: str, **params: Any) -> T:
        """Instantiate ``name`` with ``params``, rejecting parameters it does not take."""
        cls = self.get_class(name)
        signature = inspect.signature(cls.__init__)
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        allowed = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
        unknown = sorted(set(params) - set(allowed))
        if unknown and not accepts_any:
            raise ValueError(
                f"{self.family} {name!r} takes no parameter {', '.join(unknown)}; "
                f"allowed: {', '.join(allowed) or '(none)'}"
            )
        return cls(**params)

    def __contains__(self, name: object) -> bool:
        return name in self._classes
