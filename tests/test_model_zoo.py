"""Registry-wide checks, one parametrised test per property over every registered model: the input its
front end gives, the pinned complexity (DCASE way and the report's own counting), the report's figures,
tinyasc's MAC counter vs torchinfo, a forward pass, a training step, and training through the CLI.

What is specific to one family (block behaviour, table rows, report-specific counting facts) stays in
tests/test_models_*.py.
"""
import copy
import json

import pytest
import torch
from torch import nn

from tinyasc.audio.features import MelFrontEnd
from tinyasc.cli import main
from tinyasc.complexity import torchinfo_counts
from tinyasc.complexity.conventions import report_counts
from tinyasc.complexity.macs import count_macs
from tinyasc.models import create_model, frontend_config, get_spec, input_shape, list_models

# Every registered model: input shape (C, F, T) its registered front end gives a 1 s clip, the DCASE counts
# (torchinfo, as NeSsi) on that input, and the counts in the report's own convention (spec.counting;
# "tflite": bytes, not params). Measured with `tinyasc models --json`; any change here is an architecture
# or front-end change and must be deliberate (docs/models/*.md explain each figure).
PINNED = {
    # name: ((C, F, T), DCASE params, DCASE MACs, report-convention params, report-convention MACs)  # counting
    "bc_resnet_c40": ((1, 256, 44), 85_800, 18_943_160, 85_800, 18_943_160),  # dcase
    "bc_resnet_c80": ((1, 256, 44), 314_800, 952_573_840, 314_800, 952_573_840),  # dcase
    "cp_mobile": ((1, 256, 65), 126_952, 31_684_180, 126_952, 31_684_180),  # dcase
    "cp_resnet59": ((1, 256, 43), 58_360, 15_835_280, 57_980, 15_992_344),  # bn_fused
    "cp_resnet_128k": ((1, 256, 43), 127_684, 28_840_396, 127_684, 28_840_396),  # dcase
    "dcase22_baseline": ((1, 40, 51), 46_118, 29_271_638, 46_512, 29_238_120),  # tflite
    "dcase24_baseline": ((1, 256, 65), 61_148, 29_419_156, 61_148, 29_419_156),  # dcase
    "dcase24_baseline_unisa": ((1, 256, 68), 61_160, 29_428_372, 61_160, 29_428_372),  # dcase
    "fsmobilenet": ((3, 256, 36), 7_946, 3_972_650, 7_946, 3_972_650),  # dcase
    "ghost_bc_res2net": ((1, 256, 32), 81_994, 15_024_268, 81_994, 15_024_268),  # dcase
    "mini_segnet": ((3, 256, 36), 278_794, 194_408_362, 278_794, 194_408_362),  # dcase
    "mini_segnet_pruned": ((3, 256, 36), 46_316, 19_474_592, 46_316, 19_474_592),  # dcase
    "mobileformer_kt": ((1, 256, 32), 20_528, 590_086, 20_528, 617_266),  # tokens
    "mobilenetv2_ca": ((3, 128, 36), 105_888, 11_238_704, 110_452, 11_238_704),  # keras
    # Report 001's table prints 64 frames; hop 512 gives 63, and both cost the same (test_models_cp.py).
    "moflenet57": ((1, 256, 63), 60_440, 12_944_468, 58_862, 13_415_552),  # bn_fused
    "moflenet_128k": ((1, 256, 63), 126_072, 25_598_324, 126_072, 25_598_324),  # dcase
}
MODELS = list_models()

ATTENTION = {"mobileformer_kt"}  # token Linears and attention matmuls: torchinfo under-counts these
NO_REPORT_MACS = {"mini_segnet", "cp_resnet_128k", "moflenet_128k"}  # reports 003 / 001 (Table 4) give none
# Report figures tinyasc does not reach within the spec's tolerance, each explained in docs/models/*.md
# and pinned in its family file: report 002's teacher MACs (998.527 M) are 4.6 % above its own table,
# its student's (20.5 M) 8 % above Table 5's three pools counted the DCASE way, and Ghost modules in
# every block of report 000's network fit its params but leave its MACs 3 % above.
OUTSIDE_TOLERANCE = {("bc_resnet_c80", "macs"), ("bc_resnet_c40", "macs"), ("ghost_bc_res2net", "macs")}


def _shape(name):
    return (1, *PINNED[name][0])


@pytest.fixture(scope="module")
def zoo():
    """Each model built once (seed 0) with its counts measured once on the pinned input, shared by the tests."""
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            model = create_model(name)
            cache[name] = dict(model=model, dcase=torchinfo_counts(model, _shape(name)),
                               report=report_counts(model, _shape(name), get_spec(name).counting))
        return cache[name]

    return get


def test_every_registered_model_is_pinned():
    # A model added later must be pinned here; a removed one must leave the table.
    assert set(PINNED) == set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_front_end_gives_the_pinned_input(name):
    assert input_shape(name) == _shape(name)
    # the front end on real-looking audio (not only the zeros input_shape measures with): same shape, finite
    config = frontend_config(name)
    torch.manual_seed(0)
    feats = MelFrontEnd(**config)(0.1 * torch.randn(1, config["sample_rate"]))
    assert tuple(feats.shape) == _shape(name)
    assert torch.isfinite(feats).all()


@pytest.mark.parametrize("name", MODELS)
def test_dcase_counts_are_pinned(name, zoo):
    assert zoo(name)["dcase"] == PINNED[name][1:3]


@pytest.mark.parametrize("name", MODELS)
def test_report_convention_counts_are_pinned(name, zoo):
    assert zoo(name)["report"] == PINNED[name][3:5]
    if get_spec(name).counting == "dcase":
        assert PINNED[name][3:5] == PINNED[name][1:3]


@pytest.mark.parametrize("name", MODELS)
def test_report_convention_counts_match_the_report_within_tolerance(name, zoo):
    spec = get_spec(name)
    params, macs = zoo(name)["report"]
    assert spec.report_params is not None
    assert abs(params / spec.report_params - 1) <= spec.param_tolerance, params
    if name in NO_REPORT_MACS:
        assert spec.report_macs is None
        return
    within = abs(macs / spec.report_macs - 1) <= spec.mac_tolerance
    # an exemption must stay true: once the figure is reached, it has to leave OUTSIDE_TOLERANCE
    assert within != ((name, "macs") in OUTSIDE_TOLERANCE), macs


@pytest.mark.parametrize("name", MODELS)
def test_own_counter_agrees_with_torchinfo_except_attention(name, zoo):
    ours = count_macs(zoo(name)["model"], _shape(name))
    info_macs = zoo(name)["dcase"][1]
    if name in ATTENTION:
        assert ours > info_macs
    else:
        assert ours == info_macs


@pytest.mark.parametrize("name", MODELS)
def test_forward_gives_finite_logits(name, zoo):
    model = zoo(name)["model"]
    model.eval()
    try:
        with torch.no_grad():
            logits = model(torch.randn(2, *PINNED[name][0]))
    finally:
        model.train()
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", MODELS)
def test_one_training_step_changes_every_weight(name, zoo):
    torch.manual_seed(0)
    model = copy.deepcopy(zoo(name)["model"]).train()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    logits = model(torch.randn(2, *PINNED[name][0]))
    assert logits.shape == (2, 10)
    loss = nn.functional.cross_entropy(logits, torch.tensor([1, 7]))
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    names = [n for n, _ in model.named_parameters()]
    stalled = [n for n, b, p in zip(names, before, model.parameters()) if torch.equal(b, p)]
    assert not stalled, stalled  # no dead branch: every weight (GRN shifts included) gets a gradient
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    from tinyasc.data.synthetic import synthesize

    return synthesize(tmp_path_factory.mktemp("zoo") / "synth", n_clips=200, seed=0)


# bc_resnet_c80 (950 MMACs) keeps ~0.3 GB of activations per training clip for the backward pass:
# with batch 16 the suite peaked at 9.9 GB, with 4 at 3.5 GB, with 2 at 3.0 GB. The default evaluation
# batch (256) would hold 2 GB per activation, hence eval_batch_size 16 for every model, and 2 for
# bc_resnet_c80 (alone: peak 1.67 GB at 16, 1.07 GB at 2).
SMALL_BATCH = {"bc_resnet_c80": 1}
SMALL_EVAL_BATCH = {"bc_resnet_c80": 2}


@pytest.mark.parametrize("name", MODELS)
def test_train_command_works_for_every_model(name, synthetic_set, tmp_path, capsys):
    out = tmp_path / name
    code = main(["train", "--model", name, "--data", str(synthetic_set), "--split", "25", "--epochs", "1",
                 "--batch-size", str(SMALL_BATCH.get(name, 16)), "--out", str(out), "--no-progress",
                 "--set", "data.val_fraction=0",
                 "--set", f"trainer.eval_batch_size={SMALL_EVAL_BATCH.get(name, 16)}"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == len((synthetic_set / "test.csv").read_text().strip().splitlines()) - 1
    assert tuple(metrics["complexity"]["input_shapes"][0]) == _shape(name)
