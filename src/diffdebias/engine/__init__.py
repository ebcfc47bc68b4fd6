"""The shared classifier-training engine: metrics, model selection, checkpoints and the loop."""
