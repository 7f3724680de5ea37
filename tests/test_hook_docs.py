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
        "shortcut": hookspecs.SHORTCUT_HOOKS,
    }
    assert hook in groups[kind], f"{hook}: its docstring says {kind}, hookspecs disagrees"


def test_every_derived_hook_has_a_core_default() -> None:
    from threadline.storekit.defaults import DEFAULTS

    assert sorted(DEFAULTS) == sorted(hookspecs.DERIVED_HOOKS)
    for default in DEFAULTS.values():
        for need in default.needs:
            assert need in hookspecs.PERSISTENCE_HOOKS


def _doc_section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _raises(hook: str) -> list[tuple[str, str]]:
    """``(error, first line of the reason)`` of each ``:raises`` line of the hook's spec."""
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    return re.findall(r"^:raises (\w+): (.*)$", doc, flags=re.M)


@pytest.mark.parametrize("hook", hookspecs.PERSISTENCE_HOOKS)
def test_every_persistence_hook_documents_what_it_raises(hook: str) -> None:
    """A store author reads in each hook's section which errors it must raise, and when."""
    raises = _raises(hook)
    assert raises, f"{hook}: no ':raises ...:' line in the docstring"
    errors = _doc_section("Errors")
    for error, reason in raises:
        assert f":raises {error}: {reason}" in sections()[hook], f"{hook}: {error} undocumented"
        assert f"| `{error}` |" in errors, f"{error} ({hook}) is not in the Errors table"
        if error == "ConflictError" and " id " in f" {reason} ":
            doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
            assert "neutral" in doc, f"{hook}: an id conflict without the neutral-message rule"


@pytest.mark.parametrize("hook", HOOKS)
def test_reference_section_is_the_docstring(hook: str) -> None:
    """The reference says what the spec says, word for word (whitespace aside)."""
    doc = " ".join((inspect.getdoc(getattr(hookspecs, hook)) or "").split())
    assert doc in " ".join(sections()[hook].split()), f"{hook}: section differs from the spec"


def test_every_model_field_a_store_round_trips_is_listed() -> None:
    import attrs

    from threadline import models

    table = _doc_section("Model fields a store round-trips")
    for model in (
        models.Session,
        models.Message,
        models.ToolCall,
        models.ApiCall,
        models.Checkpoint,
        models.AgentRecord,
        models.ProviderRecord,
        models.AgentConfig,
    ):
        row = re.search(rf"^\| `{model.__name__}` \|(.*)\|$", table, flags=re.M)
        assert row, f"{model.__name__} is not in the model fields table"
        listed = re.findall(r"`(\w+)`", row.group(1))
        assert listed == [f.name for f in attrs.fields(model)], model.__name__


def test_threading_and_facade_checks_are_documented() -> None:
    """The sections a store author needs besides the hooks, naming what they rely on."""
    threading = _doc_section("Threading")
    for needed in ("run_sync", "asyncio.to_thread", "SyncStore", "event loop", "lock"):
        assert needed in threading, f"Threading does not mention {needed}"
    facade = _doc_section("What the Store facade checks for a store")
    for needed in (
        "scope by tenant",
        "check_id",
        "same id twice",
        "dump_json",
        "ConfigurationError",
    ):
        assert needed in facade, f"the facade section does not mention {needed}"
    errors = _doc_section("Errors")
    for kind in ("session", "message", "api call", "checkpoint", "agent", "provider"):
        assert f"`{kind}`" in errors, f"the id-conflict kinds miss {kind}"
