"""The HTML report: one self-contained file (inline CSS, images as data URIs, no network)."""

from .html import write_report

__all__ = ["write_report"]
