from __future__ import annotations

import torch
from torch import nn

from tinyasc.base.errors import TinyAscError
from tinyasc.base.registry import Registry

DOMAINS = ("waveform", "spectrogram", "frontend")
# Filled by the modules that define augmentations; importing this module first imports the package,
# whose __init__ imports every built-in one.
AUGMENTATIONS = Registry("augmentation")


def register_augmentation(name: str, domain: str | tuple[str, ...]):
    """Class decorator; ``domain`` is "waveform", "spectrogram", "frontend", or a tuple (mixup works on both)."""
    domains = (domain,) if isinstance(domain, str) else tuple(domain)

    return AUGMENTATIONS.register(name, domains=domains)


def list_augmentations(domain: str | None = None) -> list[str]:
    return [n for n in AUGMENTATIONS.names() if domain is None or domain in AUGMENTATIONS.meta(n)["domains"]]


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
        name = entry.get("name")
        entry_domains = AUGMENTATIONS.meta(name)["domains"]
        if domain not in entry_domains:
            raise TinyAscError(f"augmentation {name!r} works on {' or '.join(entry_domains)}s; "
                               f"list it under augment.{entry_domains[0]}")
        modules.append(AUGMENTATIONS.build(entry, context=context))
    if domain == "frontend" and len(modules) > 1:
        raise TinyAscError("augment.frontend: list at most one filterbank augmentation")
    return AugmentChain(*modules)
