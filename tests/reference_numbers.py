"""Compare the numbers of two results (``results.json`` of ``r2dn sysid``, the sweep's
``summary.json``), leaving out what measures the machine rather than the run."""

import math

# times, the machine and the code's identity: they differ between runs of the same settings
VOLATILE = frozenset({"r2dn_np_version", "arguments", "seconds_per_epoch", "cpu_seconds_per_epoch", "train_seconds",
                      "total_seconds", "machine", "seconds", "seconds_total", "host", "wall_seconds", "code_version",
                      "fingerprint"})


def numbers(value):
    """``value`` without the :data:`VOLATILE` keys of its dicts (at any depth)."""
    if isinstance(value, dict):
        return {k: numbers(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [numbers(v) for v in value]
    return value


def differences(got, want, rtol=1e-12, where="results"):
    """Where ``got`` and ``want`` differ: floats beyond ``rtol`` relative, anything else at all."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return [f"{where}: keys {sorted(got) if isinstance(got, dict) else got!r} != {sorted(want)}"]
        return [d for k in want for d in differences(got[k], want[k], rtol, f"{where}.{k}")]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{where}: {got!r} != {want!r}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in differences(g, w, rtol, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        same = (math.isnan(want) and math.isnan(got)) or got == want or abs(got - want) <= rtol * abs(want)
        return [] if same else [f"{where}: {got!r} != {want!r}"]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]
