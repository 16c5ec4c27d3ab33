"""The header classes of the stdlib's `email` package, made once per header name.

`email.headerregistry.HeaderRegistry` makes a new class each time a header is parsed
(`type(...)` in `__getitem__`), a noticeable share of the CPU of writing and sending a
mail; the class it makes depends only on the header name, so it is kept."""

from __future__ import annotations

import re
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


# A recipient whose To header the stdlib writes exactly as `Name <address>`: words of
# letters, digits, "-" and "_" (no character that needs quoting or encoding) and a dot-atom
# address. Such a header is set as that string, not parsed, and its address read back by
# this pattern; any other recipient goes through the header parser as before.
_WORDS = r"[A-Za-z0-9_-]+(?: [A-Za-z0-9_-]+)*"
_DOT_ATOM = r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*"
SIMPLE_TO = re.compile(rf"{_WORDS} <({_DOT_ATOM}@{_DOT_ATOM})>")
# "To: " and the value within the 78 characters a line may have before it is folded
MAX_SIMPLE_TO = 78 - len("To: ")


def simple_to(display_name: str, addr_spec: str) -> str | None:
    """The To header as the stdlib would write it, or None when it needs the parser."""
    value = f"{display_name} <{addr_spec}>"
    if len(value) > MAX_SIMPLE_TO or SIMPLE_TO.fullmatch(value) is None:
        return None
    return value
