import dataclasses

import numpy as np

from r2dn_np.checks import certificates, verify
from r2dn_np import r2dn

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
    rows = [("a", certificates.judge("x", 1.0, 2.0, "<=")),
            ("long label", certificates.judge("y", 3.0, 2.0, "<=")),
            ("c", certificates.judge("z", 3.0, 2.0, "<=", "too ill-conditioned"))]
    text = verify.table(rows)
    lines = text.splitlines()
    assert len(lines) == 4 and "holds" in lines[1] and "FAILS" in lines[2]
    assert "not decisive: too ill-conditioned" in lines[3]


def test_a_check_that_cannot_decide_never_reads_as_holding():
    """A value beyond its bound in a non-decisive check is neither a pass nor a failure, and a
    report with no decisive check does not hold."""
    check = certificates.judge("x", 5.0, 1.0, "<=", "explicit form of an ill-conditioned model")
    assert check.verdict == "not decisive" and not check.holds
    assert not certificates.report([check]).holds
    both = certificates.report([check, certificates.judge("y", 0.0, 1.0, "<=")])
    assert both.holds and both.margin == 1.0
    assert not certificates.report([check, certificates.judge("y", 2.0, 1.0, "<=")]).holds
