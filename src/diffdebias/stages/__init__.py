"""Pipeline stages that recipes compose: the generator and its synthetic set, the Bias Amplifier.

Each stage is cached by what makes it (data identity + settings) and records its wall time and
facts on the engine; recipes turn the stages' products into trainer inputs.
"""
