"""Training machinery shared by phase strategies: trainable rows, the loop, evaluation, checkpoints."""
