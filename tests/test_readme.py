"""Every Python example in README.md runs as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code, capsys):
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    capsys.readouterr()  # the examples print; what they print is checked where it matters


PROTOCOL = README.parent / "docs" / "protocol.md"
PROTOCOL_BLOCKS = re.findall(r"```python\n(.*?)```", PROTOCOL.read_text(), re.S)


@pytest.mark.parametrize("code", PROTOCOL_BLOCKS, ids=[f"block{i}" for i in range(len(PROTOCOL_BLOCKS))])
def test_protocol_doc_example_runs(code):
    assert PROTOCOL_BLOCKS
    exec(compile(code, str(PROTOCOL), "exec"), {"__name__": "protocol_example"})


SUPPLY = README.parent / "docs" / "supply_rates.md"
SUPPLY_BLOCKS = re.findall(r"```python\n(.*?)```", SUPPLY.read_text(), re.S)


@pytest.mark.parametrize("code", SUPPLY_BLOCKS, ids=[f"block{i}" for i in range(len(SUPPLY_BLOCKS))])
def test_supply_rates_doc_example_runs(code, capsys):
    assert SUPPLY_BLOCKS
    exec(compile(code, str(SUPPLY), "exec"), {"__name__": "supply_example"})
    assert capsys.readouterr().out.rstrip().endswith("True")
