import dataclasses

import numpy as np

from r2dn_np import certificates, r2dn, verify

CFG = r2dn.Config(nu=2, nx=3, nv=4, ny=2, hidden=(5,), activation="tanh", kind="lipschitz", gamma=2.0)


def test_all_checks_hold_on_a_random_model():
    rows = verify.check_model(r2dn, CFG, verify.perturbed(r2dn, CFG, 1), seed=1, quick=True)
    names = [r.name for r in rows]
    assert names[0].startswith("gradient") and names[-1].startswith("Lipschitz")
    assert all(r.holds for r in rows), verify.table([("m", r) for r in rows])


def test_contraction_check_catches_an_expanding_model():
    direct = verify.perturbed(r2dn, CFG, 2)
    explicit, cache = r2dn.direct_to_explicit(CFG, direct)
    rng = np.random.default_rng(0)
    assert verify.check_contraction(r2dn, CFG, explicit, cache, rng).holds
    bad = explicit._replace(A=3.0 * explicit.A)
    row = verify.check_contraction(r2dn, CFG, bad, cache, rng)
    assert not row.holds and row.value > 0.1


def test_lipschitz_search_catches_a_false_bound():
    direct = verify.perturbed(r2dn, CFG, 3)
    explicit, _ = r2dn.direct_to_explicit(CFG, direct)
    rng = np.random.default_rng(0)
    gain = verify.lipschitz_search(r2dn, CFG, explicit, rng)
    assert 0 < gain <= CFG.gamma * (1 + 1e-9)
    # claim a bound below the gain found: the check must fail
    liar = dataclasses.replace(CFG, gamma=0.5 * gain)
    assert not verify.check_lipschitz(r2dn, liar, explicit, rng).holds


def test_table_lists_every_row():
    rows = [("a", certificates.Check("x", 1.0, 2.0, "<=", True)),
            ("long label", certificates.Check("y", 3.0, 2.0, "<=", False))]
    text = verify.table(rows)
    assert text.count("\n") == 2 and "NO" in text.splitlines()[2] and "yes" in text.splitlines()[1]
