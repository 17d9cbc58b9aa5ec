"""What the experiments' result objects share: their numbers as a dict and as JSON."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

__all__ = ["JSONResult", "NOT_JSON", "per_epoch"]

# metadata of a result's field that is not one of its numbers (the trained model, say)
NOT_JSON = {"json": False}


class JSONResult:
    """A mixin of a result dataclass: :meth:`to_dict` (every field but those marked
    ``metadata=NOT_JSON``) and :meth:`to_json`."""

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("json", True)}

    def to_json(self):
        return json.dumps(self.to_dict(), indent=1)


def per_epoch(seconds):
    """The mean of ``seconds`` per epoch leaving out the first epoch (compilation, warm caches)
    where there are more."""
    return float(np.mean(seconds[1:] or seconds))
