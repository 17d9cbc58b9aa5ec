"""The curated mutants of scripts/mutation_check.py still apply to the current code.

The script refuses to run when a mutant's text no longer occurs exactly once in its file; this
test makes that a failure of the suite, so the list cannot go stale silently.
"""

import importlib.util
import os
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "mutation_check.py")


def _module():
    spec = importlib.util.spec_from_file_location("mutation_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


MC = _module()


@pytest.mark.parametrize("mutant", MC.MUTANTS, ids=[m.name for m in MC.MUTANTS])
def test_mutant_text_occurs_exactly_once(mutant):
    text = (MC.ROOT / mutant.path).read_text()
    assert text.count(mutant.old) == 1, (
        f"mutant {mutant.name}: its text occurs {text.count(mutant.old)} times in {mutant.path}")
    assert mutant.old != mutant.new


def test_mutant_names_unique_and_tests_exist():
    names = [m.name for m in MC.MUTANTS]
    assert len(names) == len(set(names))
    for m in MC.MUTANTS:
        files = [t for i, t in enumerate(m.tests)
                 if t.startswith("tests/") and not (i > 0 and m.tests[i - 1] == "-k")]
        assert files, m.name
        for t in files:
            assert (MC.ROOT / t.split("::")[0]).is_file(), f"mutant {m.name}: no test file {t}"
