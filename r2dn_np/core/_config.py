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
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__module__.rsplit('.', 1)[-1]}.Config.from_dict takes a dict; "
                            f"got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known, key=str)
        if unknown:
            raise TypeError(f"unknown config field {unknown[0]!r}; the fields are {sorted(known)}")
        return cls(**data)
