"""Seed systems end to end: a system spec's stages (train members, compress, ensemble) run as a resumable pipeline."""
