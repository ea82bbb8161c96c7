"""The semantic signal: a small static sentence-embedding model on the CPU (optional).

WordLlama ships its weights and tokenizer inside its PyPI wheel, so it loads with no network
and nothing is downloaded at run time; it is installed with `pip install 'supportbot[semantic]'`.
Without it, search is BM25 alone. Vectors are unit float32, stored as blobs in the bot's
SQLite file and scored with one matrix product (sqlite3 here cannot load vector extensions).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix: TypeAlias = npt.NDArray[np.float32]

log = logging.getLogger(__name__)

MODEL = "wordllama-l2-supercat-256"
BATCH = 256


def available() -> bool:
    """True when the optional semantic extra is installed."""
    return importlib.util.find_spec("wordllama") is not None


class Embedder:
    """Unit vectors for texts, from WordLlama's bundled model (never downloaded)."""

    name = MODEL

    def __init__(self, model: Any) -> None:
        self._model = model

    @classmethod
    def load(cls) -> Embedder | None:
        """The bundled model, or None when the extra is not installed."""
        if not available():
            return None
        import wordllama

        # The wheel keeps weights/ and tokenizers/ beside the code; pointing the cache at
        # the package makes load() find both there, and disable_download makes a missing
        # file an error instead of a download.
        package = Path(wordllama.__file__).parent
        model = wordllama.WordLlama.load(cache_dir=package, disable_download=True)
        return cls(model)

    def embed(self, texts: Sequence[str]) -> Matrix:
        import numpy as np

        if not texts:
            empty: Matrix = np.zeros((0, 256), dtype=np.float32)
            return empty
        parts = [self._model.embed(list(texts[i : i + BATCH]), norm=True)
                 for i in range(0, len(texts), BATCH)]
        matrix: Matrix = np.ascontiguousarray(np.vstack(parts), dtype=np.float32)
        return matrix


def to_blob(vector: Matrix) -> bytes:
    return bytes(vector.astype("float32").tobytes())


class VectorIndex:
    """All passage vectors in one matrix, for cosine similarity by a matrix product."""

    def __init__(self, ids: Sequence[int], blobs: Sequence[bytes]) -> None:
        import numpy as np

        self.ids = list(ids)
        self.matrix = (
            np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)
            if blobs else np.zeros((0, 256), dtype=np.float32)
        )

    def top(self, query: Matrix, limit: int) -> list[tuple[int, float]]:
        """(passage id, cosine) of the nearest passages, best first."""
        import numpy as np

        if not self.ids:
            return []
        scores = self.matrix @ query.reshape(-1)
        count = min(limit, len(self.ids))
        best = np.argpartition(-scores, count - 1)[:count]
        best = best[np.argsort(-scores[best])]
        return [(self.ids[i], float(scores[i])) for i in best]
