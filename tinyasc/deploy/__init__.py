"""Deployment: prediction on audio files (export and submission files build on it)."""
