"""The shared classifier-training engine: metrics, model selection, checkpoints, the loop, runs."""
