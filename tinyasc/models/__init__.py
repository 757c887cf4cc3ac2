"""Model zoo: every family registers itself on import; build with ``create_model``."""
from tinyasc.models.registry import ModelSpec, create_model, get_spec, list_models, register_model

from tinyasc.models import cp_mobile  # noqa: F401,E402  (registers dcase24_baseline, cp_mobile)

__all__ = ["ModelSpec", "create_model", "get_spec", "list_models", "register_model"]
