"""What a run reports while it trains: its loggers, a progress bar a person reads, its energy.

``trainer.loggers`` names the loggers: ``csv`` (always written: the learning curves and ``--resume``
read it), ``tensorboard``, and the optional trackers ``wandb`` and ``mlflow`` (extras
``tinyasc[wandb]``, ``tinyasc[mlflow]``). Both trackers keep their files in the run folder unless
told otherwise: Weights & Biases logs offline into ``logs/wandb`` when no API key is set up
(``WANDB_MODE`` chooses, as wandb reads it; ``wandb sync`` uploads later); MLflow writes a file store
in ``logs/mlruns`` unless ``MLFLOW_TRACKING_URI`` names a server.

``trainer.energy`` (true, or a 3-letter country code for that country's grid mix) measures the
training's energy with codecarbon's offline tracker (extra ``tinyasc[energy]``; nothing is sent
anywhere): kWh, kg CO2-eq and how they were measured.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

from tinyasc.base.errors import TinyAscError

LOGGERS = ("csv", "tensorboard", "wandb", "mlflow")
DEFAULT_LOGGERS = ["csv", "tensorboard"]
# logger or meter -> (the module it needs, the extra that installs it)
NEEDS = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow"), "energy": ("codecarbon", "energy")}


def require(what: str) -> None:
    """One line naming the extra to install when an optional package is missing."""
    module, extra = NEEDS[what]
    if importlib.util.find_spec(module) is None:
        raise TinyAscError(f"{what}: the package {module!r} is not installed; install it with "
                           f"pip install 'tinyasc[{extra}]'")


def logger_names(config: dict) -> list[str]:
    names = config["trainer"].get("loggers") or DEFAULT_LOGGERS
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise TinyAscError(f"trainer.loggers: unknown logger {unknown[0]!r}; known: {', '.join(LOGGERS)}")
    for name in names:
        if name in NEEDS:
            require(name)
    return list(dict.fromkeys(names))


def _wandb_key_set_up() -> bool:
    netrc = Path.home() / ".netrc"
    return bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())


def make_loggers(config: dict, run_dir: Path, resume_step: int | None = None) -> list:
    """The run's loggers besides the CSV log (which the trainer makes itself)."""
    run_dir = Path(run_dir)
    out = []
    for name in logger_names(config):
        if name == "tensorboard":
            purge = {} if resume_step is None else {"purge_step": resume_step}  # events after it are dropped
            out.append(TensorBoardLogger(run_dir, name="logs", version="tb", **purge))
        elif name == "wandb":
            (run_dir / "logs").mkdir(parents=True, exist_ok=True)  # wandb wants its folder to exist
            mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_key_set_up() else "offline")
            out.append(WandbLogger(project="tinyasc", name=run_dir.name, save_dir=str(run_dir / "logs"), mode=mode))
        elif name == "mlflow":
            uri = os.environ.get("MLFLOW_TRACKING_URI")
            if not uri:  # a file store in the run folder: MLflow 3 asks to be told that this is meant
                uri = (run_dir / "logs" / "mlruns").resolve().as_uri()
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            out.append(MLFlowLogger(experiment_name="tinyasc", run_name=run_dir.name, tracking_uri=uri))
    return out


class RunProgressBar(TQDMProgressBar):
    """``Epoch 3/6`` and a few readable numbers: no logger version (``v_num``), no duplicate series."""

    SHOWN = {"train/loss_step": "loss", "val/loss": "val loss", "val/macro_acc": "val macro acc"}

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        return {label: (f"{float(metrics[key]):.1%}" if key.endswith("acc") else f"{float(metrics[key]):.3f}")
                for key, label in self.SHOWN.items() if key in metrics}

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")


# codecarbon's CPU modes: read from power counters, or estimated from the CPU's TDP
_MEASURED = {"intel_rapl": "Intel RAPL power counters", "intel_power_gadget": "Intel Power Gadget",
             "apple_powermetrics": "Apple powermetrics", "amd_rapl": "AMD RAPL power counters"}


class EnergyMeter:
    """codecarbon's offline tracker around a piece of work: ``with meter: ...``, then ``meter.result``."""

    def __init__(self, setting, run_dir: Path):
        require("energy")
        self.country = setting.upper() if isinstance(setting, str) else None
        self.run_dir, self.tracker, self.result = Path(run_dir), None, {}

    def __enter__(self) -> "EnergyMeter":
        from codecarbon import OfflineEmissionsTracker  # optional: the [energy] extra

        # Its chatter would break the progress bar, and "WLD" (no country: codecarbon then takes the
        # world-average carbon intensity) is logged as an error; the result records the basis instead.
        self.tracker = OfflineEmissionsTracker(country_iso_code=self.country or "WLD", output_methods=[],
                                               output_dir=str(self.run_dir), log_level="critical",
                                               allow_multiple_runs=True, tracking_mode="machine")
        self.tracker.start()
        return self

    def __exit__(self, *exc) -> None:
        self.tracker.stop()
        data = self.tracker.final_emissions_data
        cpu_mode = next((getattr(h, "_mode", None) for h in self.tracker._hardware if type(h).__name__ == "CPU"), None)
        method = (f"CPU: {_MEASURED[cpu_mode]}" if cpu_mode in _MEASURED else
                  f"CPU: estimated from its TDP and load by codecarbon ({cpu_mode or 'no CPU power source'}), no "
                  f"readable power counters")
        method += "; GPU: NVML" if data.gpu_energy else ""
        method += "; RAM: codecarbon's per-GB estimate"
        self.result = {"kwh": float(data.energy_consumed), "co2_kg": float(data.emissions),
                       "cpu_kwh": float(data.cpu_energy), "gpu_kwh": float(data.gpu_energy),
                       "ram_kwh": float(data.ram_energy), "seconds": round(float(data.duration), 1),
                       "method": method,
                       "co2_basis": f"grid mix of {data.country_name}" if self.country and data.country_name
                       else "world-average carbon intensity",
                       "tool": f"codecarbon {data.codecarbon_version}, offline tracker, whole machine"}


def finish_trackers(trainer) -> None:
    """End the W&B run: Lightning leaves it open until the process exits, and the next run in the same
    process (``--seeds``) would join it."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
