"""What every model's frozen ``Config`` dataclass shares: its JSON form (``io.save`` stores it)."""

from __future__ import annotations

import dataclasses


class JSONConfig:
    """``to_dict`` / ``from_dict`` for a frozen dataclass of plain values. Tuples (layer sizes)
    become JSON lists; ``__post_init__`` of the Config turns them back into tuples."""

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data):
        return cls(**data)
