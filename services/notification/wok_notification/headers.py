"""The header classes of the stdlib's `email` package, made once per header name.

`email.headerregistry.HeaderRegistry` makes a new class each time a header is parsed
(`type(...)` in `__getitem__`), a noticeable share of the CPU of writing and sending a
mail; the class it makes depends only on the header name, so it is kept."""

from __future__ import annotations

from email.headerregistry import HeaderRegistry
from typing import Any


class KeptHeaderClasses(HeaderRegistry):
    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


HEADER_CLASSES = KeptHeaderClasses()
