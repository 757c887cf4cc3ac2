"""Evaluation as DCASE reports it: macro class-wise accuracy, log loss, per class and per device."""
