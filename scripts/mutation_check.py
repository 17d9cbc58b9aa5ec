"""Mutation check: can the tests catch plausible bugs in the certificates and the VJPs?

Each mutant below is one small, plausible bug (a loosened tolerance, a dropped term, a wrong
transpose, a missing mask). The script copies ``r2dn_np/``, ``tests/`` and ``setup.cfg`` into a
temporary directory, plants one mutant at a time in that copy (never in the working tree), runs
the tests relevant to it there and reports whether they failed (the mutant is *killed*) or
passed (it *survived*). It first runs every selected test group on the unmutated copy, so a
kill means the mutant was caught, not that the tests were already failing.

    python scripts/mutation_check.py                 # the curated list, about 3-6 min on 2 cores
    python scripts/mutation_check.py --list          # names and descriptions only
    python scripts/mutation_check.py -k clip -k tol  # mutants whose name contains any of these
    python scripts/mutation_check.py --jobs 2        # mutants in parallel (one copy per job)
    python scripts/mutation_check.py --tests-from HEAD~3   # what an older test suite caught

Hypothesis runs the CI profile's derandomised examples without shrinking failures.

Exit status: 0 when every mutant was killed, 1 when some survived, 2 on a setup error (a mutant
whose text no longer occurs exactly once in its file, or tests failing before any mutation).
Results and timings are documented in docs/guarantees.md ("Can the checks fail?").
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NUMPY_ONLY = "not array_api_strict and not cupy"

# test groups: pytest arguments, run with -x (stop at the first failure)
CERT = (
    "tests/test_certificates.py", "tests/test_certificate_controls.py",
    "-k", f"{NUMPY_ONLY} and not search and not hypothesis_target",
)
LBDN = ("tests/test_lbdn.py", "-k", NUMPY_ONLY)
COMPILED = ("tests/test_compiled.py",)
LINALG = ("tests/test_linalg.py", "tests/test_lbdn.py", "-k", NUMPY_ONLY)
GRADS = (
    "tests/test_feedback_models.py", "tests/test_r2dn.py", "tests/test_ren.py", "tests/test_feedback.py",
    "-k", f"{NUMPY_ONLY} and (gradients or vjp or backward)",
)


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple
    what: str


C = "r2dn_np/checks/certificates.py"
MUTANTS = [
    # --- certify's tolerances and bounds (the planted bugs first) -------------------
    Mutant("tol-loosened-1000x", C, "tol=1e-10):", "tol=1e-7):", CERT,
           "default tolerance on the explicit forms 1e-10 -> 1e-7"),
    Mutant("tol-loosened-10x", C, "tol=1e-10):", "tol=1e-9):", CERT,
           "default tolerance on the explicit forms 1e-10 -> 1e-9"),
    Mutant("implicit-bound-loosened-1000x", C, "IMPLICIT_BOUND = -1e-12", "IMPLICIT_BOUND = -1e-9", CERT,
           "implicit-form bound -1e-12 -> -1e-9"),
    Mutant("implicit-bound-minus-inf", C, "IMPLICIT_BOUND = -1e-12", 'IMPLICIT_BOUND = float("-inf")', CERT,
           "implicit check unable to fail"),
    Mutant("implicit-bound-zero", C, "IMPLICIT_BOUND = -1e-12", "IMPLICIT_BOUND = 0.0", CERT,
           "implicit-form bound tightened to 0 (no rounding room)"),
    Mutant("implicit-unnormalised", C, "return float(e.xp.min(e.xp.linalg.eigvalsh(Phi))) / scale_H,",
           "return float(e.xp.min(e.xp.linalg.eigvalsh(Phi))),", CERT,
           "implicit eigenvalue not divided by max|H|"),
    Mutant("implicit-max-eig", C, "return float(e.xp.min(e.xp.linalg.eigvalsh(Phi)))",
           "return float(e.xp.max(e.xp.linalg.eigvalsh(Phi)))", CERT,
           "largest instead of smallest eigenvalue of the implicit form"),
    Mutant("cond-growth-cubed", C, "max(1.0, self.cond_H / 1e6) ** 2", "max(1.0, self.cond_H / 1e6) ** 3", CERT,
           "explicit tolerance grows as cond^3 instead of cond^2"),
    Mutant("cond-growth-linear", C, "max(1.0, self.cond_H / 1e6) ** 2", "max(1.0, self.cond_H / 1e6)", CERT,
           "explicit tolerance grows as cond instead of cond^2"),
    Mutant("cond-growth-from-1e5", C, "max(1.0, self.cond_H / 1e6) ** 2", "max(1.0, self.cond_H / 1e5) ** 2", CERT,
           "explicit tolerance starts growing at cond 1e5 (100x looser above it)"),
    Mutant("cond-limit-1e12", C, "EXPLICIT_COND_LIMIT = 1e8", "EXPLICIT_COND_LIMIT = 1e12", CERT,
           "explicit forms counted up to cond(H) = 1e12"),
    Mutant("cond-limit-1e7", C, "EXPLICIT_COND_LIMIT = 1e8", "EXPLICIT_COND_LIMIT = 1e7", CERT,
           "explicit forms stop counting at cond(H) = 1e7"),
    Mutant("decisive-checks-always-hold", C, "bool(decisive) and all(c.holds for c in decisive)",
           "bool(decisive)", CERT, "a decisive check's verdict is ignored"),
    Mutant("margin-sign", C, "(c.bound - c.value) if c.sense", "(c.value - c.bound) if c.sense", CERT,
           "reported margin of the explicit checks has the wrong sign"),
    # --- the explicit forms and the metric -----------------------------------------------------
    Mutant("contracting-lmi-drops-C1", C, "return linalg.sym(AB.mT @ M @ AB - D + lam * (C.mT @ C))",
           "return linalg.sym(AB.mT @ M @ AB - D)", CERT, "C_contr without [C1 0]^T [C1 0]"),
    Mutant("lipschitz-lmi-drops-N1", C, "- D + lam * (N1.mT @ N1) + (N2.mT @ N2) / gamma",
           "- D + (N2.mT @ N2) / gamma", CERT, "L_gamma without [C1 0 D12]^T [C1 0 D12]"),
    Mutant("lipschitz-lmi-gamma-times", C, "- D + lam * (N1.mT @ N1) + (N2.mT @ N2) / gamma",
           "- D + lam * (N1.mT @ N1) + (N2.mT @ N2) * gamma", CERT, "L_gamma output term times gamma"),
    Mutant("lipschitz-lmi-u-block", C,
           "[_zeros(xp, nu, nx), _zeros(xp, nu, nv), gamma * linalg.eye_like(nu, M)],",
           "[_zeros(xp, nu, nx), _zeros(xp, nu, nv), gamma**2 * linalg.eye_like(nu, M)],", CERT,
           "L_gamma input block gamma^2 I instead of gamma I"),
    Mutant("ren-contracting-abar", C, "Q = _block([[-(abar**2) * M, LC1.mT], [LC1, W]])",
           "Q = _block([[-abar * M, LC1.mT], [LC1, W]])", CERT, "REN contraction rate abar instead of abar^2"),
    Mutant("ren-multiplier-2lambda", C, "W = LD11 + LD11.mT - 2.0 * (linalg.eye_like(nv, lam) * lam)",
           "W = LD11 + LD11.mT - (linalg.eye_like(nv, lam) * lam)", CERT,
           "REN explicit forms with -Lambda instead of -2 Lambda"),
    Mutant("ren-lipschitz-drops-LD12", C, "return col * _f64(explicit.C1), W, col * _f64(explicit.D12)",
           "return col * _f64(explicit.C1), W, 0.0 * _f64(explicit.D12)", CERT,
           "REN Lipschitz form without the Lambda D12 coupling"),
    Mutant("metric-transposed", C, "M = E.mT @ linalg.solve(P, E)", "M = E @ linalg.solve(P, E.mT)", CERT,
           "metric E P^-1 E^T instead of E^T P^-1 E"),
    Mutant("metric-is-H22", C, "M = E.mT @ linalg.solve(P, E)", "M = P", CERT,
           "metric P = H22 instead of E^T P^-1 E (derivations/r2dn.md section 5)"),
    Mutant("balanced-L-inv", C, "[Linv.mT, _zeros(xp, nx, n - nx)],", "[Linv, _zeros(xp, nx, n - nx)],", CERT,
           "balancing congruence by L^-1 instead of L^-T"),
    Mutant("balanced-unbalanced", C, "[Linv.mT, _zeros(xp, nx, n - nx)],",
           "[linalg.eye_like(nx, M), _zeros(xp, nx, n - nx)],", CERT, "no balancing congruence"),
    Mutant("certify-forgets-gamma", C, "lipschitz_lmi(e.explicit, e.M, e.cfg.gamma, e.multiplier)",
           "lipschitz_lmi(e.explicit, e.M, 1.0, e.multiplier)", CERT,
           "certify checks the R2DN Lipschitz form with gamma = 1"),
    Mutant("certify-forgets-abar", C, "ren_contracting_lmi(e.explicit, e.M, e.ren_multiplier, e.cfg.abar)",
           "ren_contracting_lmi(e.explicit, e.M, e.ren_multiplier)", CERT,
           "certify checks the REN contraction form at rate 1, not abar"),
    Mutant("certify-lambda-not-inverted", C, "        return 1.0 / _f64(self.cache.lam_inv)", "        return _f64(self.cache.lam_inv)",
           CERT, "certify's REN multiplier is Lambda^-1 instead of Lambda"),
    Mutant("ren-multiplier-columns", C, "LD11 = col * _f64(explicit.D11)",
           "LD11 = _f64(explicit.D11) * xp.reshape(lam, (1, nv))", CERT,
           "REN explicit forms with D11 Lambda instead of Lambda D11"),
    # --- the implicit forms --------------------------------------------------------------------
    Mutant("r2dn-implicit-drops-NtN", C, "]) - N.mT @ N", "])", CERT,
           "Lipschitz R2DN implicit form without -N^T N"),
    Mutant("r2dn-implicit-drops-C1tC1", C, "[Q - C1.mT @ C1, _zeros(xp, nx, nv), F.mT],",
           "[Q, _zeros(xp, nx, nv), F.mT],", CERT, "contracting R2DN implicit form without -C1^T C1"),
    Mutant("r2dn-implicit-gamma-block", C,
           "[_zeros(xp, nu, nx), _zeros(xp, nu, nv), g * linalg.eye_like(nu, E)],",
           "[_zeros(xp, nu, nx), _zeros(xp, nu, nv), linalg.eye_like(nu, E)],", CERT,
           "Lipschitz R2DN implicit form with I instead of gamma I"),
    Mutant("r2dn-implicit-D22-scale", C, "D22 / math.sqrt(g)],", "D22 / g],", CERT,
           "Lipschitz R2DN implicit form with D22/gamma in N"),
    Mutant("r2dn-implicit-drops-B2", C, "FB = xp.concat([F, B1t, _f64(d.B2)], axis=1)",
           "FB = xp.concat([F, B1t, 0.0 * _f64(d.B2)], axis=1)", CERT,
           "Lipschitz R2DN implicit form without B2~"),
    Mutant("ren-implicit-abar", C, "[E + E.mT - P / cfg.abar**2, -C1t.mT, F.mT],",
           "[E + E.mT - P / cfg.abar, -C1t.mT, F.mT],", CERT, "REN implicit form with P/abar"),
    Mutant("ren-implicit-drops-mQ", C, "Hc - (mQ.mT @ mQ) / cfg.gamma", "Hc", CERT,
           "Lipschitz REN implicit form without -m_Q^T m_Q / gamma"),
    Mutant("ren-implicit-lambda", C, "W = 2.0 * (linalg.eye_like(cfg.nv, E) * lam) - D11t - D11t.mT",
           "W = (linalg.eye_like(cfg.nv, E) * lam) - D11t - D11t.mT", CERT,
           "REN implicit form with Lambda instead of 2 Lambda"),
    Mutant("ren-implicit-lambda-not-inverted", C, "lam = 1.0 / _f64(cache.lam_inv)  # Lambda",
           "lam = _f64(cache.lam_inv)  # Lambda", CERT, "REN implicit form with Lambda^-1 instead of Lambda"),
    # --- the LBDN clip of d (derivations/lbdn.md (L3), (L7)) ---------------------------------
    Mutant("lbdn-vjp-no-clip-mask", "r2dn_np/lbdn.py", "dd = dpsi * psi * inside", "dd = dpsi * psi", LBDN,
           "VJP of d ignores the clip"),
    Mutant("lbdn-vjp-mask-inclusive", "r2dn_np/lbdn.py",
           "inside = xp.astype((layer.d > -_D_CLIP) & (layer.d < _D_CLIP), psi.dtype)",
           "inside = xp.astype((layer.d >= -_D_CLIP) & (layer.d <= _D_CLIP), psi.dtype)", LBDN,
           "VJP mask includes d = +-20 (against derivations/lbdn.md (L7))"),
    Mutant("lbdn-vjp-mask-upper-only", "r2dn_np/lbdn.py",
           "inside = xp.astype((layer.d > -_D_CLIP) & (layer.d < _D_CLIP), psi.dtype)",
           "inside = xp.astype(layer.d < _D_CLIP, psi.dtype)", LBDN, "VJP mask forgets the lower clip"),
    Mutant("lbdn-forward-no-clip", "r2dn_np/lbdn.py", "psi = xp.exp(xp.clip(layer.d, -_D_CLIP, _D_CLIP))",
           "psi = xp.exp(layer.d)", LBDN, "forward map without the clip"),
    Mutant("lbdn-clip-30", "r2dn_np/lbdn.py", "_D_CLIP = 20.0", "_D_CLIP = 30.0", LBDN,
           "clip at 30 instead of 20 (forward and VJP agree)"),
    # --- a sample of VJP bugs elsewhere (the kind the suite already caught) ------------------
    Mutant("cholesky-vjp-no-halving", "r2dn_np/core/linalg.py", "P = xp.tril(P) - 0.5 * (P * I)", "P = xp.tril(P)",
           LINALG, "Cholesky VJP without halving the diagonal"),
    Mutant("solve-vjp-sign", "r2dn_np/core/linalg.py", "return -(dB @ X.mT), dB", "return (dB @ X.mT), dB",
           LINALG, "solve VJP: dA = +dB X^T"),
    Mutant("cayley-vjp-not-skew", "r2dn_np/core/linalg.py", "dU = dM - dM.mT", "dU = dM", LINALG,
           "Cayley VJP forgets the skew part"),
    Mutant("normalize-vjp-no-projection", "r2dn_np/core/linalg.py", "dX = (scale / n) * (dY - X * (inner / n2))",
           "dX = (scale / n) * dY", LINALG, "weight-normalisation VJP without the projection"),
    Mutant("bptt-drops-C1-path", "r2dn_np/loop/feedback.py", "        dXs[t, ...] += mm(dv, e.C1)\n", "", GRADS,
           "BPTT without the v -> x adjoint path"),
    # --- options away from their defaults (issue 29): bugs no test at the default value sees ----
    Mutant("core-config-keeps-gamma", "r2dn_np/core/supply.py", 'kind="lipschitz", gamma=1.0, Q=None',
           'kind="lipschitz", Q=None', ("tests/test_qsr.py", "-k", "started_at_5"),
           "a learned-gamma core built at the initial gamma instead of 1"),
    Mutant("init-p-uses-eps-n", "r2dn_np/r2dn.py", "p = np.sqrt(np.sum(X * X) + cfg.eps)",
           "p = np.sqrt(np.sum(X * X) + cfg.eps_n)", ("tests/test_r2dn.py", "-k", "eps_n"),
           "init's polar scale p with eps_n where eps belongs"),
    Mutant("youla-stale-plant-state", "r2dn_np/experiments/youla.py", "xp.concat([x12T[:, :4], x3T[:, 4:]], axis=1)",
           "xp.concat([state.x[:, :4], x3T[:, 4:]], axis=1)", ("tests/test_youla.py", "-k", "carried"),
           "the Youla rollout carries the plant state it started from"),
    Mutant("observer-ignores-substeps", "r2dn_np/experiments/observer.py", "pde_step(Xi[t], b[t], substeps)",
           "pde_step(Xi[t], b[t])", ("tests/test_observer.py", "-k", "substeps"),
           "observer.simulate runs the default 4 sub-steps whatever it is given"),
    Mutant("washout-skip-wrong-window", "r2dn_np/training/train.py", "skip = max(0, opts.washout - k * opts.window)",
           "skip = max(0, opts.washout - (k + 1) * opts.window)", ("tests/test_train.py", "-k", "right_window"),
           "train's epoch loop skips the washout one window late"),
    Mutant("anderson-drops-beta", "r2dn_np/core/fixed_point.py",
           "return z + self.beta * g - xp.sum(gamma * (dZ + self.beta * dG), axis=1)",
           "return z + g - xp.sum(gamma * (dZ + dG), axis=1)", ("tests/test_fixed_point.py", "-k", "anderson"),
           "Anderson's mixed step without the damping beta"),
    Mutant("anderson-keeps-m-minus-1", "r2dn_np/core/fixed_point.py", "if len(self.dZ) > self.m:",
           "if len(self.dZ) >= self.m:", ("tests/test_fixed_point.py", "-k", "anderson"),
           "Anderson keeps m - 1 differences"),
    Mutant("solve-steps-after-last", "r2dn_np/core/fixed_point.py", "if not math.isfinite(res) or len(trace) == max_iter:",
           "if not math.isfinite(res):", ("tests/test_fixed_point.py", "-k", "unconverged"),
           "an unconverged solve returns an iterate one step past its residual"),
    Mutant("cli-overwrites-inputs", "r2dn_np/experiments/_guard.py", "            if same_file(wpath, rpath):",
           "            if False:", ("tests/test_simulate.py", "-k", "overwrite"),
           "r2dn simulate --out may name its --params or --input"),
    # the compiled time loops (r2dn_np/loop/_compiled_kernels.py) against the array-API reference
    Mutant("compiled-relu-slope-at-zero", "r2dn_np/loop/_compiled_kernels.py", "        return 1.0 if s > 0.0 else 0.0",
           "        return 1.0 if s >= 0.0 else 0.0", COMPILED, "the compiled ReLU slope is 1 at its kink"),
    Mutant("compiled-eq-backward-drops-coupling", "r2dn_np/loop/_compiled_kernels.py",
           "                acc[q] += D11[i, q] * d", "                acc[q] += 0.0 * d", COMPILED,
           "the compiled REN back-substitution forgets D11"),
    Mutant("compiled-step-drops-input", "r2dn_np/loop/_compiled_kernels.py", "    g += gu\n", "    g += 0.0 * gu\n",
           COMPILED, "the compiled step ignores u"),
]


# appended to the copy's tests/conftest.py: the CI profile's examples (derandomised, so the same
# draws as CI), without shrinking a failure, which only costs time here
_PROFILE = """
# --- added by scripts/mutation_check.py in its temporary copy ---
from hypothesis import Phase
settings.register_profile("mutation", parent=settings.get_profile("ci"),
                          phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target))
settings.load_profile("mutation")
"""


def _copy_tree(dst, tests_from=None):
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    shutil.copytree(ROOT / "r2dn_np", dst / "r2dn_np", ignore=ignore)
    if tests_from is None:
        shutil.copytree(ROOT / "tests", dst / "tests", ignore=ignore)
    else:  # the tests of an earlier revision, read with git archive (the working tree is untouched)
        dst.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", tests_from, "tests"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dst)], input=archive.stdout, check=True)
    shutil.copy2(ROOT / "setup.cfg", dst / "setup.cfg")
    with open(dst / "tests" / "conftest.py", "a") as f:
        f.write(_PROFILE)


def _env(copy):
    env = dict(os.environ)
    env.update(PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", R2DN_HYPOTHESIS="ci")
    return env


def _pytest(copy, tests, timeout):
    # test files absent from the copy (with --tests-from an older revision) are left out
    tests = [t for i, t in enumerate(tests)
             if not t.startswith("tests/") or (i > 0 and tests[i - 1] == "-k") or (copy / t.split("::")[0]).exists()]
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]
    try:
        p = subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    return p.returncode, p.stdout + p.stderr


def _first_failure(out):
    m = re.search(r"^FAILED (\S+)", out, re.M)
    return m.group(1) if m else ""


def _check_mutants(mutants):
    for m in mutants:
        text = (ROOT / m.path).read_text()
        if text.count(m.old) != 1:
            raise SystemExit(f"mutant {m.name}: its text occurs {text.count(m.old)} times in {m.path}, "
                             "not once; update the mutant list")


def _run_one(copy, m, timeout):
    """Plant ``m`` in the copy, run its tests, restore the file. Returns a result row."""
    target = copy / m.path
    original = target.read_text()
    target.write_text(original.replace(m.old, m.new))
    t0 = time.perf_counter()
    try:
        rc, out = _pytest(copy, m.tests, timeout)
    finally:
        target.write_text(original)
    dt = time.perf_counter() - t0
    if rc == 1:
        status = "killed"
    elif rc == 0:
        status = "SURVIVED"
    elif rc == "timeout":
        status = "killed (timeout)"
    else:  # collection or import error: the mutant does not even load
        status = f"error (pytest exit {rc})"
    return m, status, dt, _first_failure(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", action="append", default=[], help="only mutants whose name contains this")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--jobs", type=int, default=1, help="mutants run in parallel (default 1)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant's tests")
    ap.add_argument("--tests-from", metavar="REV", help="run the tests of git revision REV instead of the "
                    "working tree's (e.g. to see what an older suite caught)")
    args = ap.parse_args(argv)

    mutants = [m for m in MUTANTS if not args.k or any(k in m.name for k in args.k)]
    if args.list:
        for m in mutants:
            print(f"{m.name:<32} {m.path:<26} {m.what}")
        return 0
    if not mutants:
        raise SystemExit("no mutant matches")
    _check_mutants(mutants)

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="r2dn_mutation_") as tmp:
        copies = []
        for j in range(max(1, args.jobs)):
            copy = Path(tmp) / f"copy{j}"
            _copy_tree(copy, args.tests_from)
            copies.append(copy)
        # the copy, not the working tree, must be what the tests import
        probe = subprocess.run([sys.executable, "-c", "import r2dn_np; print(r2dn_np.__file__)"],
                               cwd=copies[0], env=_env(copies[0]), capture_output=True, text=True)
        if not probe.stdout.strip().startswith(str(copies[0])):
            raise SystemExit(f"r2dn_np imports from {probe.stdout.strip()!r}, not the copy; aborting")
        groups = sorted({m.tests for m in mutants})
        print(f"baseline: {len(groups)} test group(s) on the unmutated copy ...", flush=True)
        for g in groups:
            t0 = time.perf_counter()
            rc, out = _pytest(copies[0], g, args.timeout)
            if rc != 0:
                print(out[-4000:])
                raise SystemExit(f"baseline failed (pytest exit {rc}) for {' '.join(g)}")
            print(f"  passed in {time.perf_counter() - t0:5.1f} s: {' '.join(g)}", flush=True)

        print(f"\n{'mutant':<32} {'result':<18} {'time':>6}  first failing test")
        rows = []

        def work(i, m):
            return _run_one(copies[i % len(copies)], m, args.timeout)

        if len(copies) == 1:
            results = (work(0, m) for m in mutants)
        else:
            pool = ThreadPoolExecutor(len(copies))
            # one mutant at a time per copy: job j takes mutants j, j + jobs, ...
            futures = [pool.submit(lambda j=j: [work(j, m) for m in mutants[j::len(copies)]])
                       for j in range(len(copies))]
            order = {m.name: i for i, m in enumerate(mutants)}
            results = sorted((r for f in futures for r in f.result()), key=lambda r: order[r[0].name])
        for m, status, dt, first in results:
            rows.append((m, status))
            print(f"{m.name:<32} {status:<18} {dt:5.1f}s  {first}", flush=True)

    killed = sum(s.startswith("killed") for _, s in rows)
    errors = sum(s.startswith("error") for _, s in rows)
    survived = [m.name for m, s in rows if s == "SURVIVED"]
    total = time.perf_counter() - t_start
    print(f"\nkilled {killed} of {len(rows)} ({100.0 * killed / len(rows):.0f}%), "
          f"survived {len(survived)}, errors {errors}; {total:.0f} s")
    if survived:
        print("survivors: " + ", ".join(survived))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
