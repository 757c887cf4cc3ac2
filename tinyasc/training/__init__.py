"""Training: the LightningModule, losses, optimisers and schedules, distillation teachers, the trainer."""
