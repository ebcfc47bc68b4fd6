"""Class-conditional diffusion with classifier-free guidance (DDB step A), built on diffusers.

Kept apart as in diffusers: `models` (UNet presets), `schedulers` (training and sampling
schedulers by name), `pipeline` (guided sampling, one `__call__`), `train` (the training loop),
`synthetic` (cached synthetic datasets) and `audit` (does the generator reproduce the bias?).
"""
