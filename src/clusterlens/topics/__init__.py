"""Topic models over visual words: LDA, topic divergences, spatial cells."""

from __future__ import annotations

from clusterlens.topics._lda import (
    LdaResult,
    aggregate_cells,
    fit_lda,
    symmetric_kl,
    top_words,
)

__all__ = ["LdaResult", "aggregate_cells", "fit_lda", "symmetric_kl", "top_words"]
