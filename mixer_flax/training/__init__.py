"""Training: train state and steps, losses, optimizer, checkpoints and preemption, metrics."""
