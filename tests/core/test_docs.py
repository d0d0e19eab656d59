"""The plugin guide documents every hook, and every hook has a docstring (as datasette does)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from kmsframe import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
         if name.startswith("kms_")]


def test_there_are_hooks() -> None:
    assert len(HOOKS) >= 10


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_in_the_plugin_guide(hook: str) -> None:
    guide = (ROOT / "docs" / "plugins.md").read_text()
    assert f"#### `{hook}(" in guide, f"docs/plugins.md has no section for {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docstring_with_parameters_and_return(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert ":return:" in doc
    for param in inspect.signature(getattr(hookspecs, hook)).parameters:
        assert f":param {param}:" in doc, f"{hook} does not document {param}"


def test_every_hook_in_the_guide_exists() -> None:
    import re

    guide = (ROOT / "docs" / "plugins.md").read_text()
    documented = set(re.findall(r"#### `(kms_\w+)\(", guide))
    assert documented == set(HOOKS)
