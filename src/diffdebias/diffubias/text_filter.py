"""DiffuBias's text filter: keep the captions that mention one of the most frequent content words.

Tokenisation and the English stop-word list are scikit-learn's (`CountVectorizer`: lower case,
tokens of two or more word characters, `ENGLISH_STOP_WORDS` removed); no NLTK downloads.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sklearn.feature_extraction.text import CountVectorizer

_ANALYZE = CountVectorizer(stop_words="english").build_analyzer()


def content_words(caption: str) -> list[str]:
    """The caption's tokens without English stop words, in order."""
    return _ANALYZE(caption)


@dataclass
class FilterResult:
    top_words: list[str]  # the N most frequent content words, most frequent first
    counts: dict[str, int]  # frequency of every content word over all captions
    keep: list[bool]  # one flag per caption


def filter_captions(captions: list[str], top_n: int) -> FilterResult:
    """Count content words over all captions, keep the `top_n` most frequent (ties: alphabetical),
    and flag each caption that contains at least one of them."""
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    tokens = [content_words(c) for c in captions]
    counts = Counter(w for ts in tokens for w in ts)
    top = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]]
    chosen = set(top)
    return FilterResult(top, dict(counts), [any(w in chosen for w in ts) for ts in tokens])
