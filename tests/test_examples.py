"""Every script in docs/examples runs as written (each asserts its own guarantee), and there is
one per model family."""

import pathlib
import runpy

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "docs" / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
FAMILIES = {"r2dn": "r2dn_np import", "ren": "ren", "lbdn": "lbdn", "lipschitz_rnn": "lipschitz_rnn",
            "mondeq": "mondeq", "deq": "deq", "qsr": 'kind="qsr"'}


def test_one_example_per_model_family():
    texts = {p.name: p.read_text() for p in SCRIPTS}
    for family, marker in FAMILIES.items():
        assert any(family in name and marker in text for name, text in texts.items()) or any(
            f"{family}." in text and marker in text for text in texts.values()), family


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_example_runs(script, capsys):
    runpy.run_path(str(script), run_name="__main__")
    assert capsys.readouterr().out.strip()  # each says what it showed
