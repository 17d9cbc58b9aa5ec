"""The model registry (``r2dn_np/interface/registry.py``) against the modules it names, the
certificate tables it points to, the files saved before it existed, and the rest of the package
(which must not list models itself)."""

import ast
import dataclasses
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from r2dn_np.checks import certificates
from r2dn_np.core import supply, tree
from r2dn_np.interface import io, protocol, registry
from r2dn_np.training import train

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAVED = ROOT / "tests" / "data" / "saved"

# --- the registry against the modules -----------------------------------------------------------


@pytest.mark.parametrize("name", registry.MODELS)
def test_every_registered_module_exports_its_protocol(name):
    entry = registry.get(name)
    module = registry.module(name)
    assert module.__name__ == entry.module
    assert module.Config.model == name  # the name files are saved under
    assert protocol.missing(module, protocol.SPECS[entry.protocol]) == []
    fields = {f.name: f for f in dataclasses.fields(module.Config)}
    if entry.kinds:
        assert fields["kind"].default in entry.kinds
    else:
        assert "kind" not in fields
    if entry.feedback or entry.certificate or entry.flax:
        # train, sysid, certify and flax_interop read a sequence model's cfg.kind
        assert entry.protocol == registry.SEQUENCE_MODEL and entry.kinds


@pytest.mark.parametrize("name", registry.names(feedback=True))
def test_every_feedback_kind_builds(name):
    """Each registered kind is one the Config accepts; a kind the registry does not list is
    refused (so the registry's list is the module's)."""
    module = registry.module(name)
    for kind in registry.get(name).kinds:
        assert module.Config(**CASES[(registry.get(name).certificate, kind)][1]).kind == kind
    with pytest.raises(ValueError, match="kind"):
        module.Config(1, 1, 1, 1, kind="not a kind")


def test_missing_names_a_departure_from_every_spec():
    class Empty:
        pass

    for spec in protocol.SPECS.values():
        assert sorted(protocol.missing(Empty, spec)) == sorted(f"{n}: not exported" for n in spec)


def test_names_get_module():
    assert registry.names(feedback=True) == ("r2dn", "ren")
    assert set(registry.names(protocol=registry.EQUILIBRIUM_LAYER)) == {"deq", "mondeq"}
    assert set(registry.names()) == set(registry.MODELS)
    assert registry.get("ren").certificate == "ren"
    assert train.get_model("ren") is registry.module("ren")
    with pytest.raises(ValueError, match=r"model must be one of \('r2dn', 'ren'\); got 'deq'"):
        registry.get("deq", feedback=True)
    with pytest.raises(ValueError, match="model must be one of"):
        train.get_model("lipschitz_rnn")
    with pytest.raises(ValueError, match="model"):
        registry.module("r2dn_delayed")
    with pytest.raises(TypeError, match="'colour'"):
        registry.names(colour="red")


def test_reading_the_registry_imports_no_model():
    code = ("import sys; from r2dn_np.interface import registry; registry.names(feedback=True); "
            "print(sorted(m for m in sys.modules if m.split('.')[-1] in registry.MODELS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.strip() == "[]"


# --- no model is listed outside the registry -----------------------------------------------------

# Files that may still list models, and why. Each is a place the registry should reach next.
LISTS_ALLOWED = {
    # the R2DN paper's observer and Youla experiments compare exactly these two models
    # (identity_output, nu = ny = 1); owned by the experiments, to read registry.names(feedback=True)
    "r2dn_np/experiments/observer.py",
    "r2dn_np/experiments/youla.py",
}


def model_lists(source):
    """Line numbers of literal collections in ``source`` that name two or more registered
    models: tuples, lists and sets of names (``("r2dn", "ren")``), and dicts from names to
    modules or module paths (``{"r2dn": r2dn, "ren": ren}``, ``{"r2dn": "r2dn_np.r2dn"}``).
    Per-model settings (``dict(r2dn=32, ren=60)``, a preset's sizes) are not lists of models."""
    names = set(registry.MODELS)

    def named(nodes):
        return {n.value for n in nodes if isinstance(n, ast.Constant) and n.value in names}

    def module_like(v):
        return (isinstance(v, (ast.Name, ast.Attribute))
                or isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value.startswith("r2dn_np."))

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(named(node.elts)) >= 2:
            found.append(node.lineno)
        elif isinstance(node, ast.Dict) and len(named(node.keys)) >= 2 and all(map(module_like, node.values)):
            found.append(node.lineno)
    return sorted(found)


def test_model_lists_finds_the_old_lists():
    """The negative control: each form the six old lists took is found."""
    old = '''
MODELS = {"lbdn": "r2dn_np.lbdn", "r2dn": "r2dn_np.r2dn"}
SEQUENCE_MODELS = ("r2dn", "ren", "lipschitz_rnn", "tanh_rnn")
EQUILIBRIUM_LAYERS = ["deq", "mondeq"]
module = {"r2dn": r2dn, "ren": ren}.get(model)
ok = model in {"r2dn", "ren"}
sizes = dict(r2dn=32, ren=60)
kinds = ("r2dn", "contracting")
'''
    assert model_lists(old) == [2, 3, 4, 5, 6]


def test_no_model_is_listed_outside_the_registry():
    found = {}
    for path in sorted((ROOT / "r2dn_np").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "r2dn_np/interface/registry.py" or rel in LISTS_ALLOWED:
            continue
        lines = model_lists(path.read_text())
        if lines:
            found[rel] = lines
    assert found == {}, f"lists of models outside r2dn_np/interface/registry.py (read the registry): {found}"


# --- files saved before the registry still load ---------------------------------------------------

# the configs tests/data/saved/*.npz were written with (init(cfg, seed=1), at commit 784e338)
SAVED_BEFORE = {
    "r2dn": dict(nu=1, nx=2, nv=3, ny=1, hidden=(4,), kind="lipschitz", gamma=2.0),
    "ren": dict(nu=1, nx=2, nv=3, ny=1),
    "lbdn": dict(n_in=2, n_out=3, hidden=(4,)),
    "lipschitz_rnn": dict(n_in=2, n_units=3, n_out=1, decoder="sequence"),
    "tanh_rnn": dict(n_in=2, n_units=3, n_out=1, decoder="sequence"),
    "deq": dict(n_in=2, n=3),
    "mondeq": dict(n_in=2, n=3, n_out=1),
}


def test_every_saved_file_is_of_a_registered_model():
    assert {p.stem for p in SAVED.glob("*.npz")} == set(SAVED_BEFORE) <= set(registry.MODELS)


@pytest.mark.parametrize("name", SAVED_BEFORE)
def test_files_saved_before_the_registry_load_exactly(name, tmp_path):
    path = SAVED / f"{name}.npz"
    loaded = io.load(path)
    module = registry.module(name)
    assert loaded.config == module.Config(**SAVED_BEFORE[name])
    arrays, meta = io.read_arrays(path)
    assert meta["model"] == name
    got = dict(tree.paths(loaded.params))
    assert set(got) == set(arrays)
    for field, a in arrays.items():
        assert got[field].dtype == a.dtype and np.array_equal(got[field], a), field
    # and saved again today, the file holds the same arrays and names the model the same way
    io.save(tmp_path / "again.npz", loaded.config, loaded.params, metadata=loaded.metadata)
    again, meta_again = io.read_arrays(tmp_path / "again.npz")
    assert meta_again == meta
    assert all(np.array_equal(again[k], arrays[k]) for k in arrays)
    if name in registry.names(feedback=True):
        model = train.load_model(str(path))
        assert model.module is module and model.config == loaded.config
        assert model.simulate(np.ones(5)).shape == (5, 1)
    else:
        with pytest.raises(io.FormatError, match=f"holds a '{name}' model; only r2dn and ren"):
            train.load_model(str(path))


# --- certificate tables -----------------------------------------------------------------------------

_Q, _S, _R = supply.example(2, 2, seed=1)
# (certificate, variant) -> (model, Config keyword arguments): a valid model of every table
CASES = {
    ("r2dn", "contracting"): ("r2dn", dict(nu=2, nx=3, nv=4, ny=2, hidden=(3,), activation="tanh")),
    ("r2dn", "lipschitz"): ("r2dn", dict(nu=2, nx=3, nv=4, ny=2, hidden=(3,), kind="lipschitz", gamma=0.5,
                                         d22="free", learn_multiplier=True)),
    ("r2dn", "lipschitz, learned gamma"): ("r2dn", dict(nu=2, nx=3, nv=4, ny=2, hidden=(3,), kind="lipschitz",
                                                        gamma=0.7, learn_gamma=True)),
    ("r2dn", "qsr"): ("r2dn", dict(nu=2, nx=3, nv=4, ny=2, hidden=(3,), kind="qsr", Q=_Q, S=_S, R=_R)),
    ("r2dn", "structured contracting"): ("r2dn", dict(nu=2, nx=4, nv=3, ny=2, hidden=(3,), lti="diagonal")),
    ("r2dn", "structured lipschitz"): ("r2dn", dict(nu=2, nx=4, nv=3, ny=2, hidden=(3,), kind="lipschitz",
                                                    gamma=0.7, lti="diagonal_plus_lowrank", rank=2)),
    ("ren", "contracting"): ("ren", dict(nu=2, nx=3, nv=4, ny=2, abar=0.9)),
    ("ren", "lipschitz"): ("ren", dict(nu=2, nx=3, nv=4, ny=2, kind="lipschitz", gamma=2.0, d22="free")),
    ("ren", "lipschitz, learned gamma"): ("ren", dict(nu=2, nx=3, nv=4, ny=2, kind="lipschitz", gamma=2.0,
                                                      learn_gamma=True)),
    ("ren", "qsr"): ("ren", dict(nu=2, nx=3, nv=4, ny=2, kind="qsr", Q=_Q, S=_S, R=_R)),
}


def _case(key):
    name, kwargs = CASES[key]
    module = registry.module(name)
    cfg = module.Config(**kwargs)
    explicit, cache = module.direct_to_explicit(cfg, module.init(cfg, seed=0))
    return cfg, explicit, cache


def _f64(a):
    return np.array(a, dtype=np.float64)


def _weights(**change):
    """Replace explicit weights: ``name=function(old weight) -> new weight``."""
    def perturb(cfg, explicit, cache):
        return explicit._replace(**{k: f(_f64(getattr(explicit, k))) for k, f in change.items()}), cache
    return perturb


def _cache(**change):
    def perturb(cfg, explicit, cache):
        return explicit, cache._replace(**{k: f(getattr(cache, k), cache) for k, f in change.items()})
    return perturb


def _expanding(A):
    return 1.5 * np.eye(A.shape[0])  # grows every state in any metric: no contraction certificate


def _loud(C):
    return C + 1e3  # an output far beyond any Lipschitz bound or supply rate


def _shrink_E(E, cache):
    # E + E^T - P < 0: the implicit form cannot be positive (its first diagonal block)
    return _f64(E) - 10.0 * float(np.abs(_f64(cache.H)).max()) * np.eye(E.shape[0])


# check function -> a perturbation that makes that check fail (a new check needs one here)
FAILS_WITH = {
    certificates.r2dn_contraction: _weights(A=_expanding),
    certificates.r2dn_lipschitz: _weights(C2=_loud),
    certificates.r2dn_supply: _weights(C2=_loud),
    certificates.r2dn_implicit: _cache(E=_shrink_E),
    certificates.r2dn_core_implicit: _cache(E=_shrink_E),
    certificates.ren_contraction: _weights(A=_expanding),
    certificates.ren_lipschitz: _weights(C2=_loud),
    certificates.ren_supply: _weights(C2=_loud),
    certificates.ren_implicit: _cache(E=_shrink_E),
    certificates.ren_core_implicit: _cache(E=_shrink_E),
    certificates.structured_omega_a: _cache(Oa=lambda Oa, c: 2.0 * _f64(Oa)),
    certificates.structured_omega_b: _cache(Ob=lambda Ob, c: 2.0 * _f64(Ob)),
    certificates.structured_state_budget: _cache(a=lambda a, c: 2.0 + _f64(a)),
    certificates.structured_input_budget: _cache(kappa=lambda k, c: 2.0 + _f64(k)),
    certificates.structured_splits: _cache(splits=lambda s, c: tuple(2.0 * _f64(t) for t in s)),
    certificates.structured_probes: _weights(B1=lambda B1: B1 + 1e-6),
    certificates.structured_dense_contraction: _weights(A=_expanding),
    certificates.structured_dense_lipschitz: _weights(C2=_loud),
}


def test_every_registered_kind_has_a_table_and_a_case():
    keys = {(m.certificate, kind) for m in registry.MODELS.values() if m.certificate for kind in m.kinds}
    assert keys <= set(certificates.TABLES)
    assert set(CASES) == set(certificates.TABLES)
    assert {m.certificate for m in registry.MODELS.values() if m.certificate} == {k[0] for k in certificates.TABLES}
    for table in certificates.TABLES.values():
        assert table.checks and all(check in FAILS_WITH for _, check in table.checks)


@pytest.mark.parametrize("key", CASES, ids=[", ".join(k) for k in CASES])
def test_each_table_runs_in_order_on_a_valid_model(key):
    cfg, explicit, cache = _case(key)
    assert (registry.get(cfg.model).certificate, certificates.variant(cfg)) == key
    assert certificates.table(cfg) is certificates.TABLES[key]
    report = certificates.certify(cfg, explicit, cache)
    assert report.holds and report.margin > 0, report.table()
    e = certificates.Evidence(cfg, explicit, cache, 1e-10)
    assert [c.name for c in report.checks] == [name.format(e=e) for name, _ in certificates.TABLES[key].checks]


CHECK_CASES = [(key, i) for key in CASES for i in range(len(certificates.TABLES[key].checks))]


@pytest.mark.parametrize("key, i", CHECK_CASES, ids=[f"{', '.join(k)}-{i}" for k, i in CHECK_CASES])
def test_every_check_can_fail(key, i):
    """A perturbed weight (or map-cache entry, for the inverse-free forms and the structured
    factors, which do not read the explicit weights) makes the check fail, and the report with it."""
    cfg, explicit, cache = _case(key)
    name, check = certificates.TABLES[key].checks[i]
    bad_explicit, bad_cache = FAILS_WITH[check](cfg, explicit, cache)
    report = certificates.certify(cfg, bad_explicit, bad_cache)
    e = certificates.Evidence(cfg, bad_explicit, bad_cache, 1e-10)
    row = [c for c in report.checks if c.name == name.format(e=e)]
    assert len(row) == 1 and row[0].verdict == "fails", report.table()
    assert not report.holds and report.margin < 0


def test_certify_refuses_a_model_without_a_certificate():
    from r2dn_np import lipschitz_rnn

    cfg = lipschitz_rnn.Config(n_in=1, n_units=2, n_out=1)
    with pytest.raises(TypeError, match=r"cfg must be the Config of a certified model \('r2dn', 'ren'\)"):
        certificates.certify(cfg, None, None)
