"""Datasets: TAU-layout folders, split lists, the synthetic scene set, and the waveform cache."""
