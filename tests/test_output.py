"""What a person reads: figure titles, axes and legends, the progress bar, table headers, the run folder."""
from __future__ import annotations

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from tinyasc.cli import main
from tinyasc.complexity.table import format_model_table, model_row
from tinyasc.evaluation.plots import plot_confusion, plot_learning_curves
from tinyasc.modelfile.int8 import int8_measurement
from tinyasc.training.loggers import RunProgressBar

VAL_MACRO = [0.30, 0.55, 0.50]  # best epoch: 2


def write_log(path):
    """A CSV log as Lightning writes it: epoch-level rows of training and validation metrics."""
    rows = ["epoch,step,train/loss_epoch,train/acc,val/loss,val/macro_acc,val/acc"]
    for e, macro in enumerate(VAL_MACRO):
        rows.append(f"{e},{10 * (e + 1)},{1.5 - 0.3 * e},{0.4 + 0.1 * e},{1.6 - 0.2 * e},{macro},{macro + 0.01}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_learning_curves_read_without_the_code(tmp_path):
    fig = plot_learning_curves(write_log(tmp_path / "metrics.csv"), tmp_path / "curves.png", title="my-run")
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert fig._suptitle.get_text() == "Learning curves: my-run"
    ax_loss, ax_acc = fig.axes
    assert ax_acc.get_ylabel() == "accuracy (%)" and "loss" in ax_loss.get_ylabel()
    names = [t.get_text() for t in ax_acc.get_legend().get_texts()]
    assert "validation macro class-wise accuracy" in names and not any("/" in n for n in names)
    macro = next(line for line in ax_acc.get_lines() if line.get_label() == "validation macro class-wise accuracy")
    assert np.allclose(macro.get_ydata(), [100 * v for v in VAL_MACRO])  # percent, not fractions
    best = [line for line in ax_acc.get_lines() if line.get_label().startswith("best epoch")]
    assert best and best[0].get_label() == "best epoch 2 (best.ckpt, 55.0 %)" and best[0].get_xdata()[0] == 2


def test_confusion_title_names_the_checkpoint_and_the_data(tmp_path):
    fig = plot_confusion(np.array([[3, 1], [0, 4]]), ["bus", "park"], tmp_path / "cm.png", title="macro accuracy 87.5%",
                         data="/data/TAU-urban-acoustic-scenes-2022-mobile-development",
                         checkpoint="/home/me/runs/r1/checkpoints/best.ckpt")
    title = fig.axes[0].get_title()
    assert "r1/checkpoints/best.ckpt on TAU-urban-acoustic-scenes-2022-mobile-development" in title
    assert "macro accuracy 87.5%" in title and (tmp_path / "cm.png").is_file()


class Tiny(L.LightningModule):
    """Logs what SceneClassifier logs, under the same names."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 2)

    def training_step(self, batch, _):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log_dict({"val/macro_acc": (self.net(x).argmax(1) == y).float().mean(),
                       "val/loss": nn.functional.cross_entropy(self.net(x), y)}, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_progress_bar_shows_epoch_of_total_and_no_version(tmp_path):
    seen = {}

    class Look(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            bar = trainer.progress_bar_callback
            seen["desc"], seen["metrics"] = bar.train_progress_bar.desc, bar.get_metrics(trainer, module)

    data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,)))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    trainer = L.Trainer(max_epochs=2, logger=CSVLogger(tmp_path), callbacks=[RunProgressBar(), Look()],
                        enable_model_summary=False, enable_checkpointing=False, accelerator="cpu")
    trainer.fit(Tiny(), loader, loader)
    assert seen["desc"].startswith("Epoch 2/2")
    assert set(seen["metrics"]) == {"loss", "val loss", "val macro acc"}  # no v_num, no loss_epoch duplicate
    assert seen["metrics"]["val macro acc"].endswith("%")


def test_models_table_header_names_the_counting():
    text = format_model_table([model_row("dcase24_baseline", int8_measurement)])
    header = text.splitlines()[0]
    assert "counted as" in header and "dev. P % (as counted)" in header and "dev. M % (as counted)" in header
    assert " dcase " in text.splitlines()[2]


def test_train_names_its_run_folder_first(tau_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\n")  # a run already: refused, but only after the folder is named
    assert main(["train", "--data", str(tau_dir), "--out", str(run), "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"run folder: {run}"
    assert "already holds a run" in err
