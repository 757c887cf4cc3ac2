"""Ensembles: weighted logit averaging exactly as specified, a linear combination fitted on held-out
clips, summed complexity, and ensemble files that load back as one model."""
import json

import numpy as np
import pytest
import torch

from conftest import write_tau_folder
from tinyasc import config as cfgmod
from tinyasc.modelfile import format as artifact
from tinyasc.compress.ensemble import average_weights, fit_linear
from tinyasc.modelfile import Ensemble
from tinyasc.modelfile import Predictor, load_predictor
from tinyasc.base.errors import TinyAscError
from tinyasc.models import create_model, frontend_config
from tinyasc.experiment import train

CLASSES = ["airport", "bus", "park"]


def member(seed: int, **config_changes) -> Predictor:
    torch.manual_seed(seed)
    config = cfgmod.resolve(None, [config_changes])
    hyper = {"config": config, "classes": CLASSES, "devices": ["a", "b"]}
    net = create_model(config["model"]["name"], n_classes=3, **config["model"]["args"])
    with torch.no_grad():  # BN at identity-free random statistics, so members differ clearly
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    return Predictor(artifact.network_record(net.eval(), hyper), f"member {seed}")


def test_weighted_average_is_the_weighted_sum_of_member_logits():
    a, b = member(0), member(1)
    waves = torch.randn(4, 32000) * 0.1
    za, zb = a.logits(waves), b.logits(waves)
    v1 = Ensemble([a, b], average_weights([0.5, 0.5], 2))
    v2 = Ensemble([a, b], average_weights([3, 2], 2))  # normalised to report 001's v2, 0.6 / 0.4
    assert v2.weights.tolist() == pytest.approx([0.6, 0.4])
    assert torch.allclose(v1.logits(waves), 0.5 * za + 0.5 * zb, atol=1e-6)
    assert torch.allclose(v2.logits(waves), 0.6 * za + 0.4 * zb, atol=1e-6)
    assert not torch.allclose(v1.logits(waves), v2.logits(waves))
    only_a = Ensemble([a, b], average_weights([1, 0], 2))
    assert torch.allclose(only_a.logits(waves), za, atol=1e-6)
    biased = Ensemble([a, b], [0.5, 0.5], bias=[1.0, -2.0, 0.5], method="linear")
    assert torch.allclose(biased.logits(waves), v1.logits(waves) + torch.tensor([1.0, -2.0, 0.5]), atol=1e-6)
    for bad in ([1.0], [-1.0, 2.0], [0.0, 0.0]):
        with pytest.raises(TinyAscError, match="--weights"):
            average_weights(bad, 2)


def test_members_with_different_front_ends_combine_and_complexity_adds_up():
    a = member(0)
    b = member(2, frontend={"hop_length": 400}, model={"name": "dcase24_baseline", "args": {"base_channels": 16}})
    ens = Ensemble([a, b], [0.5, 0.5])
    waves = torch.randn(2, 32000) * 0.1
    assert torch.allclose(ens.logits(waves), 0.5 * a.logits(waves) + 0.5 * b.logits(waves), atol=1e-6)
    ca, cb, c = a.complexity(), b.complexity(), ens.complexity()
    assert c["params"] == ca["params"] + cb["params"] and c["macs"] == ca["macs"] + cb["macs"]
    assert c["bytes"] == ca["bytes"] + cb["bytes"] and len(c["input_shapes"]) == 2
    assert c["input_shapes"][0] != c["input_shapes"][1]
    with pytest.raises(TinyAscError, match="different front ends"):
        ens.network_module()
    linear = Ensemble([a, b], [0.7, 0.2], bias=[0.0, 0.1, 0.2], method="linear")
    assert linear.complexity()["params"] == c["params"] + 2 + 3  # the combination's own weights and bias
    with pytest.raises(TinyAscError, match="classes"):
        Ensemble([a, Predictor(artifact.network_record(create_model("dcase24_baseline", n_classes=3).eval(),
                                                       {"config": a.config, "classes": ["x", "y", "z"],
                                                        "devices": ["a"]}))], [0.5, 0.5])


def test_linear_fit_weights_the_informative_model():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=4000)
    informative = np.eye(3)[labels] * 3 + rng.normal(0, 1.0, (4000, 3))
    noise = rng.normal(0, 1.0, (4000, 3))
    weights, bias = fit_linear(np.stack([informative, noise]), labels)
    assert weights[0] > 1.0 and abs(weights[1]) < 0.1 and len(bias) == 3

    def ce(w, b):
        z = torch.einsum("n,nmk->mk", torch.tensor(w, dtype=torch.float64),
                         torch.tensor(np.stack([informative, noise]))) + torch.tensor(b, dtype=torch.float64)
        return torch.nn.functional.cross_entropy(z, torch.tensor(labels)).item()

    assert ce(weights, bias) < ce([0.5, 0.5], [0.0, 0.0, 0.0])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A trained run whose seed-0 hold-out (val_fraction 0.7) keeps one recording per class, and an
    untrained member file with the same data settings."""
    root = tmp_path_factory.mktemp("ensemble")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYASC_CACHE", str(root / "cache"))
        config = cfgmod.resolve(None, [{"data": {"dir": str(write_tau_folder(root / "tau")), "val_fraction": 0.7},
                                        "trainer": {"epochs": 1, "batch_size": 8, "eval_batch_size": 64},
                                        "schedule": {"warmup_steps": 2}}])
        train(config, root / "run", progress=False)
    torch.manual_seed(5)
    hyper = {"config": config, "classes": CLASSES, "devices": ["a", "b", "s4"]}
    artifact.save(root / "other.pt", artifact.network_record(create_model("dcase24_baseline", n_classes=3).eval(),
                                                             hyper))
    return root / "run", root / "other.pt"


def test_cli_fit_linear_saves_an_ensemble_that_loads_as_one_model(runs, tmp_path, capsys):
    from tinyasc.cli import main

    run, other = runs
    out = tmp_path / "ens.pt"
    assert main(["ensemble", str(run), str(other), "--fit-linear", "--out", str(out), "--no-progress", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["method"] == "linear" and info["fit"]["clips"] == 24  # city1: 3 classes x 4 segments x 2 devices
    assert len(info["weights"]) == 2 and len(info["bias"]) == 3
    loaded = load_predictor(out)
    a, b = load_predictor(run), load_predictor(other)
    waves = torch.randn(3, 32000) * 0.1
    expected = info["weights"][0] * a.logits(waves) + info["weights"][1] * b.logits(waves) + torch.tensor(info["bias"])
    assert torch.allclose(loaded.logits(waves), expected, atol=1e-5)
    results = info["results"]
    assert results["ensemble"]["n"] == results["model 1"]["n"] == 36
    assert results["ensemble"]["complexity"]["macs"] == 2 * results["model 1"]["complexity"]["macs"]
    assert main(["ensemble", str(run), str(other), "--weights", "0.6", "0.4", "--fit-linear"]) == 2


def test_members_trained_on_longer_clips_are_evaluated_on_the_ensembles_clip(tmp_path):
    # Report 003's ensemble 4: a second frequency-split MobileNet trained on features twice as long in
    # time; both members are evaluated on the 36 frames of the 1 s test clip.
    fs = {"model": {"name": "fsmobilenet", "args": {}}, "frontend": frontend_config("fsmobilenet")}
    short = member(0, **fs)
    long = member(1, **fs, data={"duration": 2.0})
    assert long.input_shape[-1] == 79 and short.input_shape[-1] == 36  # 2 s -> 87 frames, minus 8 at the edges
    ens = Ensemble([long, short], [0.7, 0.3])
    assert ens.duration == 1.0 and ens.config["data"]["duration"] == 1.0  # the clip the ensemble scores
    seen = []
    hooks = [m.network.register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape)))
             for m in (long, short)]
    waves = torch.randn(2, 44100) * 0.1
    combined = ens.logits(waves)
    for h in hooks:
        h.remove()
    assert seen == [(2, 3, 256, 36), (2, 3, 256, 36)]  # each member: its own front end on the same 1 s clip
    assert torch.allclose(combined, 0.7 * long.logits(waves) + 0.3 * short.logits(waves), atol=1e-6)
    # MACs of the long member as it runs here (36 frames), not as it trained (79)
    c = ens.complexity()
    assert c["members"][0]["macs"] == long.complexity(1.0)["macs"] < long.complexity()["macs"]
    assert c["macs"] == long.complexity(1.0)["macs"] + short.complexity()["macs"]
    assert c["input_shapes"] == [[1, 3, 256, 36], [1, 3, 256, 36]]
    artifact.save(tmp_path / "ens.pt", ens.record)
    loaded = load_predictor(tmp_path / "ens.pt")
    assert loaded.duration == 1.0 and torch.allclose(loaded.logits(waves), combined, atol=1e-6)
