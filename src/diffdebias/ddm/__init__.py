"""Debiasing Diffusion Model (DDM, arXiv 2503.12536) and fairness metrics for generators.

`indicator` (the MLP on the predicted noise and the loss), `groups` (given or inferred group
labels), `train` (DDM on the project's pixel-space diffusion engine), `lora` (the same objective
as LoRA fine-tuning of a diffusers text-to-image model), `metrics` (FD, SPD, Frechet distance)
and `evaluate` (any folder of samples against classifiers trained on real data).
"""
