"""An int8 network whose graph keeps a packed weight as an attribute (a ``torch.ScriptObject``: the
Mobile-Former head's grouped linear layer, a Conv1d) saves to a model file that the safe loader
reads, and the rebuilt network gives the logits of the one saved."""
import torch

from tinyasc import config as cfgmod
from tinyasc.modelfile import format as artifact
from tinyasc.modelfile import load_predictor
from tinyasc.modelfile.int8 import calibrate, convert, prepare


def test_int8_mobileformer_file_loads_safely_with_the_same_logits(tmp_path):
    torch.manual_seed(0)
    config = cfgmod.resolve("000_mobileformer_kt")
    hyper = {"config": config, "classes": [f"scene{i}" for i in range(10)], "devices": ["a"]}
    float_record = {"kind": "network", "precision": "fp32", "hyper_parameters": hyper, "shapes": {}}
    network = artifact.float_network(float_record).eval()
    shape = artifact.input_shape(config)
    prepared = prepare(network, "ptq", torch.zeros(shape), fast_observers=True)
    calibrate(prepared, [torch.randn(2, *shape[1:])])
    int8 = convert(prepared)
    packed = [k for k, v in int8.state_dict().items() if isinstance(v, torch.ScriptObject)]
    assert packed == ["head_fc_0_packed_weight_0"]  # what the safe loader used to refuse

    path = artifact.save(tmp_path / "model.pt", artifact.network_record(int8, hyper, "int8", "ptq"))
    saved = torch.load(path, weights_only=True)["model"]["state_dict"]  # the safe loader reads it
    assert not any(isinstance(v, torch.ScriptObject) for v in saved.values())
    predictor = load_predictor(path)
    feats = torch.randn(3, *shape[1:])
    with torch.no_grad():
        expected, got = int8(feats), predictor.logits_from_features(feats)
    assert torch.equal(got, expected) and expected.std() > 0
    rebuilt = predictor.network.state_dict()["head_fc_0_packed_weight_0"].unpack()
    original = int8.state_dict()["head_fc_0_packed_weight_0"].unpack()
    assert torch.equal(rebuilt[0].int_repr(), original[0].int_repr()) and torch.equal(rebuilt[1], original[1])
