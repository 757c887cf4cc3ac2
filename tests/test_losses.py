import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyasc import config as cfgmod
from tinyasc.base.errors import TinyAscError
from tinyasc.cli import main as cli_main
from tinyasc.training.distill import lookup_table
from tinyasc.training.losses import CrossEntropy, DistillationLoss, FocalLoss, build_loss
from tinyasc.training.module import SceneClassifier
from tinyasc.data.build import make_datamodule
from tinyasc.experiment import train

QUIET = {"augment": {"waveform": [], "spectrogram": []}}


def logits_and_labels(seed=0, n=16, classes=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, classes, generator=g) * 3, torch.randint(0, classes, (n,), generator=g)


def test_focal_loss_matches_its_formula_and_reduces_to_cross_entropy_at_gamma_0():
    logits, labels = logits_and_labels()
    p_t = F.softmax(logits, 1)[torch.arange(16), labels]
    expected = (-(1 - p_t) ** 2 * torch.log(p_t)).mean()
    torch.testing.assert_close(FocalLoss(gamma=2.0)(logits, labels), expected)
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, labels), F.cross_entropy(logits, labels))
    alpha = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    weighted = (-alpha[labels] * (1 - p_t) ** 2 * torch.log(p_t)).mean()
    torch.testing.assert_close(FocalLoss(gamma=2.0, alpha=alpha.tolist())(logits, labels), weighted)
    # confident right answers count for much less than under cross-entropy
    easy = torch.tensor([[6.0, 0, 0, 0, 0]])
    assert FocalLoss(gamma=2.0)(easy, torch.tensor([0])) < 1e-4 * CrossEntropy()(easy, torch.tensor([0]))


def test_losses_take_soft_targets_as_weighted_hard_ones():
    logits, labels = logits_and_labels()
    other = torch.roll(labels, 1)
    soft = 0.7 * F.one_hot(labels, 5).float() + 0.3 * F.one_hot(other, 5).float()
    for loss in (CrossEntropy(), FocalLoss(gamma=2.0)):
        per_clip = [0.7 * loss(logits[i:i + 1], labels[i:i + 1]) + 0.3 * loss(logits[i:i + 1], other[i:i + 1])
                    for i in range(16)]
        torch.testing.assert_close(loss(logits, soft), torch.stack(per_clip).mean())


def test_distillation_loss_is_the_weighted_sum_of_label_loss_and_scaled_kl():
    logits, labels = logits_and_labels()
    teacher_logits, _ = logits_and_labels(seed=1)
    t = 3.0
    teacher = F.softmax(teacher_logits / t, 1)
    kl = F.kl_div(F.log_softmax(logits / t, 1), teacher, reduction="batchmean")
    ce = F.cross_entropy(logits, labels)
    kd = build_loss({"name": "cross_entropy", "distill": {"weight": 0.3, "temperature": t, "teachers": ["x"]}})
    torch.testing.assert_close(kd(logits, labels, teacher), 0.7 * ce + 0.3 * t * t * kl)
    zero = DistillationLoss(CrossEntropy(), weight=0.0, temperature=t)
    assert torch.equal(zero(logits, labels, teacher), CrossEntropy()(logits, labels))
    same = DistillationLoss(CrossEntropy(), weight=1.0, temperature=t)(logits, labels, F.softmax(logits / t, 1))
    assert same.abs() < 1e-6  # a student that matches its teacher has nothing left to learn from it
    with pytest.raises(TinyAscError, match="weight"):
        build_loss({"name": "focal", "distill": {"weight": 1.5}})
    with pytest.raises(TinyAscError, match="unknown loss"):
        build_loss({"name": "hinge"})


def teacher_run(tau_dir, tmp_path):
    config = cfgmod.resolve(None, [QUIET, {"data": {"dir": str(tau_dir)}, "trainer": {"epochs": 1, "batch_size": 16}}])
    train(config, tmp_path / "teacher", progress=False)
    return tmp_path / "teacher"


def student_config(tau_dir, distill: dict, **extra):
    return cfgmod.resolve(None, [QUIET, {"data": {"dir": str(tau_dir)}, "loss": {"name": "cross_entropy",
                                                                                  "distill": distill}}, extra])


def test_distillation_from_checkpoints_and_from_a_precomputed_file(tau_dir, tmp_path):
    teacher = teacher_run(tau_dir, tmp_path)
    ckpt = str(teacher / "checkpoints" / "last.ckpt")
    logits_file = tmp_path / "teacher_logits.npz"
    assert cli_main(["teacher-logits", str(teacher), ckpt, "--out", str(logits_file), "--no-progress"]) == 0

    config = student_config(tau_dir, {"weight": 0.5, "temperature": 2.0, "teachers": [ckpt, ckpt]})
    dm = make_datamodule(config, progress=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    torch.manual_seed(0)
    student = SceneClassifier(config, dm.classes, dm.devices).train()
    wave, feats = batch[0], student.frontend(batch[0])
    from_checkpoints = student.teachers.probs(student, batch, wave, feats)
    student_params = {id(p) for p in student.parameters()}
    assert not from_checkpoints.requires_grad  # teachers run in inference mode: no gradient reaches them
    assert not any(id(p) in student_params for t in student.teachers._loaded for p in t.network.parameters())
    assert all(not k.startswith("teachers") for k in student.state_dict())  # teachers stay out of checkpoints

    # The file holds the same (averaged) teacher logits per clip file name.
    rows, file_logits = lookup_table(logits_file, [c.filename for c in dm.clips["train"]], dm.classes)
    assert (rows >= 0).all()
    from_file = F.softmax(file_logits[rows[batch[3]]] / 2.0, 1)
    torch.testing.assert_close(from_file, from_checkpoints, atol=1e-5, rtol=1e-4)

    # Weight 0 is plain cross-entropy: the same training step gives the same loss.
    plain = cfgmod.resolve(None, [QUIET, {"data": {"dir": str(tau_dir)}}])
    losses = []
    for cfg in (plain, student_config(tau_dir, {"weight": 0.0, "temperature": 2.0, "teachers": [ckpt]})):
        torch.manual_seed(0)
        module = SceneClassifier(cfg, dm.classes, dm.devices).train()
        losses.append(module.training_step(batch, 0))
    assert torch.equal(losses[0], losses[1])

    # A whole run distilled from the file, with mixup mixing the teacher outputs alike.
    config = student_config(tau_dir, {"weight": 0.7, "temperature": 2.0, "logits": str(logits_file)},
                            augment={"spectrogram": [{"name": "mixup", "alpha": 0.3}]},
                            trainer={"epochs": 1, "batch_size": 16})
    result = train(config, tmp_path / "student", progress=False)
    assert np.isfinite(result["log_loss"])


def test_distillation_config_errors_name_the_problem(tau_dir, tmp_path):
    with pytest.raises(TinyAscError, match="either teachers"):
        SceneClassifier(student_config(tau_dir, {"weight": 0.5}), ["airport", "bus", "park"], ["a"])
    bad = tmp_path / "bad.npz"
    np.savez(bad, filenames=np.array(["audio/x.wav"]), logits=np.zeros((1, 2), np.float32),
             classes=np.array(["p", "q"]))
    with pytest.raises(TinyAscError, match="classes"):
        lookup_table(bad, ["audio/x.wav"], ["airport", "bus"])
    with pytest.raises(TinyAscError, match="does not exist"):
        lookup_table(tmp_path / "none.npz", [], [])
