"""A small generic name -> class registry (one per family: schedulers, backends, ...)."""

from __future__ import annotations

import importlib
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

    def register_target(self, name: str, target: str, base: type, field: str) -> type[T]:
        """Import the class at ``target`` (``my_package.my_module.MyScheduler``, the YAML's
        ``_target_``) and register it as ``name``, so that a class defined outside this
        package runs without an edit inside it. Registering the same class again is a no-op.

        :param base: the class ``target`` must subclass (``Scheduler``).
        :param field: the config key, for messages (``scheduler``).
        :raises UnknownNameError: ``target`` cannot be imported or is not a ``base``, or
            ``name`` already belongs to another class.
        """
        allowed = (
            f"the import path package.module.Class of a {base.__name__} subclass, its module importable "
            "(on PYTHONPATH or installed)"
        )
        module_name, _, attr = target.rpartition(".")
        if not module_name or not attr:
            raise UnknownNameError(f"{field}._target_={target!r} is invalid; allowed: {allowed}")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except Exception as err:  # noqa: BLE001 - a user's module may raise anything on import
            raise UnknownNameError(
                f"{field}._target_={target!r} is invalid ({type(err).__name__}: {err}); allowed: {allowed}"
            ) from None
        if not (inspect.isclass(cls) and issubclass(cls, base)):
            raise UnknownNameError(
                f"{field}._target_={target!r} is invalid ({cls!r} is not a {base.__module__}.{base.__name__} "
                f"subclass); allowed: {allowed}"
            )
        if name in self._classes and self._classes[name] is not cls:
            other = self._classes[name]
            raise UnknownNameError(
                f"{field}.name={name!r} is invalid with {field}._target_={target!r} ({name!r} is "
                f"{other.__module__}.{other.__qualname__}); allowed: a name of its own, e.g. its YAML file's stem "
                f"(not {', '.join(self.names())})"
            )
        self._classes[name] = cls
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

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
