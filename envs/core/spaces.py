"""Text spaces that accept what language models actually emit.

Gymnasium's ``spaces.Text`` checks every character against a charset (alphanumeric by default), so
an ordinary sentence is not "in" it. ``UnicodeText`` keeps ``Text``'s type, so Gymnasium's vector
utilities and checkers treat it as text, but accepts any Unicode string within its length bounds.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from gymnasium import spaces

_SAMPLE_CHARSET = string.ascii_letters + string.digits + string.punctuation + " \n\t" + "äéñøπ∑∞中文日本語🙂"


class UnicodeText(spaces.Text):
    """A ``gymnasium.spaces.Text`` that contains any ``str`` of allowed length.

    ``sample()`` draws from a mixed ASCII/Unicode alphabet, which is enough for checkers and fuzzing.
    """

    def __init__(self, max_length: int = 1 << 20, *, min_length: int = 0, seed: int | np.random.Generator | None = None):
        super().__init__(max_length=max_length, min_length=min_length, charset=_SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        if mask is not None or probability is not None:
            return super().sample(mask=mask, probability=probability)
        # Short samples: Text.sample draws lengths up to max_length, which is 1M characters here.
        length = int(self.np_random.integers(self.min_length, min(self.max_length, 256) + 1))
        chars = self.np_random.choice(np.array(list(_SAMPLE_CHARSET)), size=length)
        return "".join(chars.tolist())

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnicodeText) and (self.min_length, self.max_length) == (other.min_length, other.max_length)

    def __hash__(self) -> int:
        return hash(("UnicodeText", self.min_length, self.max_length))
