"""Commands that package models for the DCASE 2025 inference harness: package-2025."""
from __future__ import annotations


def add_parsers(sub) -> None:
    pass


COMMANDS: dict = {}
