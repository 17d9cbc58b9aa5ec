"""What the benchmark scripts of issue 31 share: writing their rows (dicts with the same keys) as CSV."""

from __future__ import annotations

import csv


def write_rows(path, rows):
    """``rows`` (a non-empty list of dicts with the same keys) to the CSV file ``path``; returns ``rows``."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows
