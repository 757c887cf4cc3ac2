from __future__ import annotations

import inspect

from torch import nn

from tinyasc.errors import TinyAscError

_AUGMENTATIONS: dict[str, tuple[str, type[nn.Module]]] = {}


def register_augmentation(name: str, domain: str):
    """Class decorator; ``domain`` is "waveform" or "spectrogram"."""

    def wrap(cls):
        _AUGMENTATIONS[name] = (domain, cls)
        return cls

    return wrap


def list_augmentations(domain: str | None = None) -> list[str]:
    return sorted(n for n, (d, _) in _AUGMENTATIONS.items() if domain in (None, d))


def build_augmentations(entries: list[dict] | None, domain: str, **context) -> nn.Sequential:
    """Build the listed augmentations; ``context`` (e.g. sample_rate) fills arguments an entry leaves out."""
    modules = []
    for entry in entries or []:
        entry = dict(entry)
        name = entry.pop("name", None)
        if name not in _AUGMENTATIONS:
            raise TinyAscError(f"unknown augmentation {name!r}; known: {', '.join(list_augmentations())}")
        entry_domain, cls = _AUGMENTATIONS[name]
        if entry_domain != domain:
            raise TinyAscError(f"augmentation {name!r} works on {entry_domain}s; list it under augment.{entry_domain}")
        accepted = inspect.signature(cls).parameters
        entry = {**{k: v for k, v in context.items() if k in accepted}, **entry}
        try:
            modules.append(cls(**entry))
        except TypeError as exc:
            raise TinyAscError(f"augmentation {name!r}: bad argument ({exc})") from None
    return nn.Sequential(*modules)
