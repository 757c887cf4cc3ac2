"""Training: the LightningModule, losses, optimisers and schedules, and the run orchestration."""
