"""DiffuBias (arXiv 2411.16079): bias-conflicting training images from a generator, guided by the
hardest samples of a biased classifier. Stages in `stages.py`; backends in `captioners.py` and
`generators.py`; the text filter in `text_filter.py`."""

from .stages import resolve_backends, synthetic_split

__all__ = ["resolve_backends", "synthetic_split"]
