"""Noise schedules for training and swappable samplers (diffusers schedulers) by name."""

from __future__ import annotations

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, SchedulerMixin

from ..errors import ConfigError

BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
SAMPLERS = ("ddpm", "ddim", "dpmpp")
PREDICTIONS = ("epsilon", "v_prediction")


def training_scheduler(schedule: str, prediction: str, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> DDPMScheduler:
    if schedule not in BETA_SCHEDULES:
        raise ConfigError(f"unknown noise schedule '{schedule}'; valid: {', '.join(BETA_SCHEDULES)}")
    if prediction not in PREDICTIONS:
        raise ConfigError(f"unknown prediction type '{prediction}'; valid: {', '.join(PREDICTIONS)}")
    return DDPMScheduler(
        num_train_timesteps=timesteps,
        beta_schedule=BETA_SCHEDULES[schedule],
        beta_start=beta_start,
        beta_end=beta_end,
        prediction_type=prediction,
        clip_sample=True,
    )


def sampling_scheduler(name: str, train_config) -> SchedulerMixin:
    """A sampler sharing the training noise schedule: ancestral DDPM, DDIM (trailing) or DPM-Solver++."""
    if name == "ddpm":
        return DDPMScheduler.from_config(train_config)
    if name == "ddim":
        return DDIMScheduler.from_config(train_config, timestep_spacing="trailing", clip_sample=True)
    if name == "dpmpp":
        return DPMSolverMultistepScheduler.from_config(
            train_config, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing"
        )
    raise ConfigError(f"unknown sampler '{name}'; valid: {', '.join(SAMPLERS)}")
