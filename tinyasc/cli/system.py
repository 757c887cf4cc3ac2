"""Commands that run whole seed systems: system run."""
from __future__ import annotations


def add_parsers(sub) -> None:
    pass


COMMANDS: dict = {}
