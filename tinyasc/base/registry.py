"""The one registry type: models, augmentations, losses, optimisers and schedules are all kept in one.

A registry maps names to builders (classes or functions). Entries are added by the module that
defines them, with ``@REGISTRY.register("name")``, so importing that module is what registers them;
nothing registers anything in another package. Names are looked up, never imported: a config can
only name what is registered.
"""
from __future__ import annotations

import inspect
from typing import Any

from tinyasc.base.errors import TinyAscError


class Registry:
    def __init__(self, kind: str):
        self.kind = kind  # "model", "loss", ...: used in messages
        self._entries: dict[str, Any] = {}
        self._meta: dict[str, dict] = {}

    def register(self, name: str, obj: Any = None, **meta):
        """Register ``obj`` under ``name`` (or decorate it); ``meta`` is kept beside it."""
        def add(target):
            if not isinstance(name, str) or not name:
                raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = target
            self._meta[name] = dict(meta)
            return target

        return add if obj is None else add(obj)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def get(self, name: str):
        if not isinstance(name, str) or name not in self._entries:
            raise TinyAscError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._entries[name]

    def meta(self, name: str) -> dict:
        self.get(name)
        return self._meta[name]

    def build(self, entry: dict | str, *args, context: dict | None = None, **kwargs):
        """Call the builder named by ``entry`` (``{name, **args}`` or a bare name) with ``args``,
        the entry's arguments and ``kwargs``. ``context`` fills only the arguments the builder
        accepts and the entry leaves out. A wrong argument is reported in one line."""
        entry = {"name": entry} if isinstance(entry, str) else dict(entry)
        name = entry.pop("name", None)
        builder = self.get(name)
        if context:
            accepted = inspect.signature(builder).parameters
            entry = {**{k: v for k, v in context.items() if k in accepted}, **entry}
        try:
            return builder(*args, **entry, **kwargs)
        except (TypeError, ValueError) as exc:
            raise TinyAscError(f"{self.kind} {name!r}: bad argument ({exc})") from None
