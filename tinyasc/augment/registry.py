from __future__ import annotations

import inspect

import torch
from torch import nn

from tinyasc.errors import TinyAscError

DOMAINS = ("waveform", "spectrogram", "frontend")
_AUGMENTATIONS: dict[str, tuple[tuple[str, ...], type[nn.Module]]] = {}


def register_augmentation(name: str, domain: str | tuple[str, ...]):
    """Class decorator; ``domain`` is "waveform", "spectrogram", "frontend", or a tuple (mixup works on both)."""
    domains = (domain,) if isinstance(domain, str) else tuple(domain)

    def wrap(cls):
        _AUGMENTATIONS[name] = (domains, cls)
        return cls

    return wrap


def list_augmentations(domain: str | None = None) -> list[str]:
    return sorted(n for n, (d, _) in _AUGMENTATIONS.items() if domain is None or domain in d)


class AugmentChain(nn.Sequential):
    """The augmentations of one domain, applied in the listed order.

    Most take and return a batch ``x``. Two kinds see more of the batch: a module with
    ``mixes_targets`` (mixup) takes and returns ``(x, targets)``, turning class ids into soft
    targets; a module with ``uses_devices`` (DIR restricted to some devices) also gets the
    batch's device ids. Called without targets, the chain returns ``x`` alone.
    """

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None, devices: torch.Tensor | None = None):
        for module in self:
            if getattr(module, "mixes_targets", False):
                if targets is None:
                    raise ValueError(f"{type(module).__name__} mixes labels: call the chain with targets")
                x, targets = module(x, targets)
            elif getattr(module, "uses_devices", False):
                x = module(x, devices)
            else:
                x = module(x)
        return x if targets is None else (x, targets)

    def filterbank(self, frontend) -> torch.Tensor | None:
        """For an ``augment.frontend`` chain: the mel filterbank to use this batch (None: the front end's own)."""
        return self[0](frontend) if len(self) else None


def build_augmentations(entries: list[dict] | None, domain: str, **context) -> AugmentChain:
    """Build the listed augmentations; ``context`` (e.g. sample_rate) fills arguments an entry leaves out."""
    modules = []
    for entry in entries or []:
        entry = dict(entry)
        name = entry.pop("name", None)
        if name not in _AUGMENTATIONS:
            raise TinyAscError(f"unknown augmentation {name!r}; known: {', '.join(list_augmentations())}")
        entry_domains, cls = _AUGMENTATIONS[name]
        if domain not in entry_domains:
            raise TinyAscError(f"augmentation {name!r} works on {' or '.join(entry_domains)}s; "
                               f"list it under augment.{entry_domains[0]}")
        accepted = inspect.signature(cls).parameters
        entry = {**{k: v for k, v in context.items() if k in accepted}, **entry}
        try:
            modules.append(cls(**entry))
        except TypeError as exc:
            raise TinyAscError(f"augmentation {name!r}: bad argument ({exc})") from None
    if domain == "frontend" and len(modules) > 1:
        raise TinyAscError("augment.frontend: list at most one filterbank augmentation")
    return AugmentChain(*modules)
