"""Secret masking: every occurrence of a secret value in text or data becomes ``***``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["Masker"]


class Masker:
    """Replaces every occurrence of any secret value with ``***``.

    Secrets are matched longest first, so a secret that contains another is masked
    whole. Each secret is also matched in its JSON-escaped spellings, since agents often
    echo arguments back inside JSON text. With no secrets, :meth:`mask` returns its
    argument untouched at no cost.
    """

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {s for s in secrets if isinstance(s, str) and s}
        for secret in list(values):
            values.add(json.dumps(secret)[1:-1])
            values.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        ordered = sorted(values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask_text(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        return text if self._pattern is None else self._pattern.sub("***", text)

    def mask(self, value: Any) -> Any:
        """A copy of a nested dict/list/str value with secrets masked in every string.

        Mapping keys are masked too; non-string scalars are kept as they are.
        """
        if self._pattern is None:
            return value
        return _mask(value, self._pattern)


def _mask(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub("***", value)
    if isinstance(value, Mapping):
        return {_mask(k, pattern): _mask(v, pattern) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, pattern) for v in value]
    if isinstance(value, tuple):
        return tuple(_mask(v, pattern) for v in value)
    return value
