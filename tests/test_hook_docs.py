"""Every hook is documented in docs/plugin-hooks.md (as datasette checks its own)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from threadline import hookspecs

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugin-hooks.md"
HOOKS = sorted(name for name in vars(hookspecs) if name.startswith("threadline_"))


def sections() -> dict[str, str]:
    parts = re.split(r"^### (threadline_\w+)\s*$", DOC.read_text(encoding="utf-8"), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_parameters(hook: str) -> None:
    documented = sections()
    assert hook in documented, f"{hook} is missing from {DOC.name}"
    for param in inspect.signature(getattr(hookspecs, hook)).parameters:
        assert param in documented[hook], f"{hook}: parameter {param} undocumented"


@pytest.mark.parametrize("hook", HOOKS)
def test_hookspec_is_typed_and_has_param_fields(hook: str) -> None:
    spec = getattr(hookspecs, hook)
    signature = inspect.signature(spec)
    assert signature.return_annotation is not inspect.Signature.empty
    doc = inspect.getdoc(spec) or ""
    for name, param in signature.parameters.items():
        assert param.annotation is not inspect.Parameter.empty, f"{hook}.{name} untyped"
        assert f":param {name}:" in doc, f"{hook}: no ':param {name}:' in the docstring"


def test_no_documented_hook_is_stale() -> None:
    assert sorted(sections()) == HOOKS


@pytest.mark.parametrize("hook", [h for h in HOOKS if h in hookspecs.PERSISTENCE_HOOKS])
def test_every_persistence_hook_states_its_tier(hook: str) -> None:
    """A store author sees in the spec and in the reference whether a hook is required."""
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    tier = re.search(r"^Tier: ([^.(]+)", doc, flags=re.M)
    assert tier, f"{hook}: no 'Tier:' line in the docstring"
    assert f"Tier: {tier.group(1)}" in sections()[hook], f"{hook}: tier undocumented"
    kind = tier.group(1).split()[0]
    groups = {
        "required": hookspecs.REQUIRED_HOOKS,
        "API-call": hookspecs.API_CALL_HOOKS,
        "config": hookspecs.CONFIG_HOOKS,
        "lifecycle": hookspecs.LIFECYCLE_HOOKS,
        "derived": hookspecs.DERIVED_HOOKS,
    }
    assert hook in groups[kind], f"{hook}: its docstring says {kind}, hookspecs disagrees"


def test_every_derived_hook_has_a_core_default() -> None:
    from threadline.storekit.defaults import DEFAULTS

    assert sorted(DEFAULTS) == sorted(hookspecs.DERIVED_HOOKS)
    for default in DEFAULTS.values():
        for need in default.needs:
            assert need in hookspecs.PERSISTENCE_HOOKS
