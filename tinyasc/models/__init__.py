"""Model zoo: every family registers itself on import; build with ``create_model``."""
from tinyasc.models.registry import (MODELS, ModelSpec, create_model, frontend_config, get_spec, input_shape,
                                     list_models, register_model)

from tinyasc.models import cp_mobile  # noqa: F401,E402  (registers dcase24_baseline, cp_mobile)
from tinyasc.models import cp_resnet  # noqa: F401,E402  (registers cp_resnet59, cp_resnet_128k)
from tinyasc.models import moflenet  # noqa: F401,E402  (registers moflenet57, moflenet_128k)
from tinyasc.models import bc_resnet  # noqa: F401,E402  (registers bc_resnet_c80, bc_resnet_c40)
from tinyasc.models import bc_res2net  # noqa: F401,E402  (registers ghost_bc_res2net)
from tinyasc.models import mobileformer  # noqa: F401,E402  (registers mobileformer_kt)
from tinyasc.models import dcase22_baseline  # noqa: F401,E402  (registers dcase22_baseline)
from tinyasc.models import mobilenetv2_ca  # noqa: F401,E402  (registers mobilenetv2_ca)
from tinyasc.models import fsmobilenet  # noqa: F401,E402  (registers fsmobilenet)
from tinyasc.models import mini_segnet  # noqa: F401,E402  (registers mini_segnet, mini_segnet_pruned)

__all__ = ["MODELS", "ModelSpec", "create_model", "frontend_config", "get_spec", "input_shape", "list_models",
           "register_model"]
