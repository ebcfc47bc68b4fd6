"""ERM: plain cross-entropy."""

from .base import Method


class ERM(Method):
    name = "erm"
