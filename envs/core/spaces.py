"""Text spaces that accept what language models actually emit.

Gymnasium's ``spaces.Text`` checks every character against a charset (alphanumeric by default), so
an ordinary sentence is not "in" it. ``UnicodeText`` keeps ``Text``'s type, so Gymnasium's vector
utilities and checkers treat it as text, but accepts any Unicode string within its length bounds.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Sequence
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


# --- Gymnasium's AsyncVectorEnv moves observations through shared memory. It reads the buffer once,
# at construction, expecting a live view (true of numpy arrays); for ``Text`` it gets a tuple of
# strings that never changes, and its codec keeps only charset characters. These handlers store code
# points (UTF-32) behind a length prefix and return a live sequence that decodes the buffer when read
# or copied (AsyncVectorEnv deep-copies observations before returning them), so any Unicode arrives.
class SharedTextBatch(Sequence[str]):
    """A live, read-only view of ``n`` strings in a shared-memory buffer."""

    def __init__(self, rows: np.ndarray):
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self)[index]
        row = self._rows[index]
        return row[1:1 + int(row[0])].tobytes().decode("utf-32-le", errors="surrogatepass")

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def __deepcopy__(self, memo: dict) -> tuple[str, ...]:
        return tuple(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __repr__(self) -> str:
        return f"SharedTextBatch({tuple(self)!r})"


def _register_shared_memory_handlers() -> None:
    import multiprocessing as mp
    from types import ModuleType

    from gymnasium.vector.utils import shared_memory as sm

    @sm.create_shared_memory.register(UnicodeText)
    def _create(space: UnicodeText, n: int = 1, ctx: ModuleType = mp) -> Any:
        return ctx.Array(np.dtype(np.uint32).char, n * (space.max_length + 1))

    @sm.read_from_shared_memory.register(UnicodeText)
    def _read(space: UnicodeText, shared_memory: Any, n: int = 1) -> SharedTextBatch:
        rows = np.frombuffer(shared_memory.get_obj(), dtype=np.uint32).reshape((n, space.max_length + 1))
        return SharedTextBatch(rows)

    @sm.write_to_shared_memory.register(UnicodeText)
    def _write(space: UnicodeText, index: int, value: str, shared_memory: Any) -> None:
        width = space.max_length + 1
        codes = np.frombuffer(value[: space.max_length].encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
        destination = np.frombuffer(shared_memory.get_obj(), dtype=np.uint32)[index * width:(index + 1) * width]
        destination[0] = len(codes)
        destination[1:1 + len(codes)] = codes


_register_shared_memory_handlers()
