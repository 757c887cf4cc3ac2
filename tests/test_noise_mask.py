"""Report 003's noise-mask target (Section 2.3.2): its criterion, its alignment with the augmented input,
the loss CE + w * BCE, a training run with it, and a model file without its head."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tinyasc import config as cfgmod
from tinyasc.base.errors import TinyAscError
from tinyasc.experiment import train
from tinyasc.modelfile import load_predictor
from tinyasc.models import create_model
from tinyasc.training.module import SceneClassifier
from tinyasc.training.noise_mask import NoiseMask, mask_target

SMALL_NET = {"widths": [4, 4, 4, 4, 4, 4], "dense_units": 8, "mixup_norm": False, "dropout": 0.0}


def config_003(**loss):
    overrides = [{"model": {"args": SMALL_NET}, "trainer": {"epochs": 1, "batch_size": 8, "eval_batch_size": 64},
                  "data": {"val_fraction": 0.0}}]
    if loss:
        overrides.append({"loss": loss})
    return cfgmod.resolve("003_mini_segnet", overrides)


def test_mask_is_one_exactly_where_the_noise_adds_at_most_3_db():
    clean = torch.rand(1, 1, 16, 20) + 0.1  # mel powers
    ratio = torch.logspace(-2, 1, 16 * 20).view(1, 1, 16, 20)  # noise / clean power per bin, 0.01 .. 10
    noisy = clean * (1 + ratio)
    mask = mask_target(noisy.log(), clean.log(), threshold_db=3.0)
    assert torch.equal(mask, (10 * torch.log10(1 + ratio) <= 3.0).float())
    assert 0 < mask.mean() < 1  # at 3 dB: noise up to ~the clean power (local SNR >= ~0 dB)
    assert mask[ratio <= 0.99].all() and not mask[ratio >= 1.0].any()


def test_target_lines_up_with_the_cropped_and_masked_input():
    module = SceneClassifier(config_003(), ["a", "b", "c"], ["a", "b"]).train()
    module.spec_augment = module.spec_augment[:2]  # time crop to 30 frames, two frequency masks
    wave = torch.randn(4, 44100) * torch.linspace(0, 1, 44100)  # louder towards the end: crops differ
    torch.manual_seed(1)
    noisy_wave = module.noise_mask.noise(wave)
    clean_full, noisy_full = module.frontend(wave), module.frontend(noisy_wave)
    torch.manual_seed(1)
    noisy, _, logits, _, mask = module.noise_mask(module, wave, None, torch.tensor([0, 1, 2, 0]), None)
    assert noisy.shape == mask.shape[:1] + (3, 256, 30) and mask.shape == (4, 1, 256, 30) and logits.shape == (4, 3)
    for i in range(4):
        masked_bands = (noisy[i] == 0).all(dim=(0, 2))  # freq_mask fills with 0
        offsets = [o for o in range(noisy_full.shape[-1] - 29)
                   if torch.equal(noisy_full[i, :, ~masked_bands, o:o + 30], noisy[i, :, ~masked_bands])]
        assert len(offsets) == 1
        o = offsets[0]
        expected = ((noisy_full[i, 0] - clean_full[i, 0])[:, o:o + 30] <= 0.3 * math.log(10)).float()
        expected[masked_bands] = 1.0  # equal in both inputs there
        assert torch.equal(mask[i, 0], expected)


def test_training_loss_is_cross_entropy_plus_weighted_mask_bce():
    module = SceneClassifier(config_003(name="cross_entropy", noise_mask={"weight": 0.7}), ["a", "b", "c"],
                             ["a", "b"]).train()
    wave, labels, devices = torch.randn(6, 44100) * 0.1, torch.tensor([0, 1, 2, 0, 1, 2]), torch.zeros(6).long()
    torch.manual_seed(5)
    with pytest.warns(UserWarning, match="self.log"):  # no trainer: the step logs nothing
        loss = module.training_step((wave, labels, devices, torch.arange(6)), 0)
    torch.manual_seed(5)
    feats, targets, _, _, mask = module.noise_mask(module, wave, None, labels, devices)
    assert targets.dim() == 2 and 0 < mask.mean() < 1  # mixup made soft targets; the mask is not trivial
    logits, decoded = module.model(feats), module.model.stages(feats)
    ce = -(targets * F.log_softmax(logits, 1)).sum(1).mean()
    head = module.noise_mask.head
    z = torch.einsum("bchw,oc->bohw", decoded, head.weight[:, :, 0, 0]) + head.bias.view(1, -1, 1, 1)
    z = F.interpolate(z, size=(256, 30), mode="bilinear", align_corners=False)
    bce = -(mask * F.logsigmoid(z) + (1 - mask) * F.logsigmoid(-z)).mean()
    torch.testing.assert_close(loss, ce + 0.7 * bce)


def test_a_run_trains_with_the_mask_and_its_model_file_has_no_head(tau_dir, tmp_path):
    config = config_003()
    config["data"]["dir"] = str(tau_dir)
    assert config["loss"]["noise_mask"]["weight"] == 1.0  # on in report 003's recipe
    metrics = train(config, tmp_path / "run", progress=False)
    assert math.isfinite(metrics["log_loss"])
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert "noise_mask.head.weight" in state
    predictor = load_predictor(tmp_path / "run")
    bare = create_model("mini_segnet", n_classes=3, **SMALL_NET)
    assert predictor.complexity()["params"] == sum(p.numel() for p in bare.parameters())


def test_a_model_without_a_decoder_is_refused():
    with pytest.raises(TinyAscError, match="loss.noise_mask: .* has no decoder map"):
        NoiseMask(create_model("fsmobilenet", n_classes=3))
    with pytest.raises(TinyAscError, match="unknown key"):
        NoiseMask.from_config(create_model("mini_segnet", n_classes=3, **SMALL_NET), {"weigth": 1.0})


def test_a_swapped_network_gets_a_head_of_its_width_or_trains_without_the_mask():
    module = SceneClassifier(config_003(), ["a", "b", "c"], ["a", "b"]).train()
    module.model = create_model("mini_segnet", n_classes=3, **{**SMALL_NET, "widths": [4, 4, 4, 4, 3, 2]})  # pruned
    module.setup("fit")  # Lightning calls it before building the optimiser
    assert module.mask_on and module.noise_mask.head.in_channels == 2
    batch = (torch.randn(4, 44100) * 0.1, torch.tensor([0, 1, 2, 0]), torch.zeros(4).long(), torch.arange(4))
    with pytest.warns(UserWarning, match="self.log"):
        assert torch.isfinite(module.training_step(batch, 0))
    module.model = create_model("fsmobilenet", n_classes=3)  # stands for a network without a decoder map
    module.setup("fit")
    assert not module.mask_on
    with pytest.warns(UserWarning, match="self.log"):
        assert torch.isfinite(module.training_step(batch, 0))
