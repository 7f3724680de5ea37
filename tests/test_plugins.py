"""Plugin loading, the scheme registry and connect()'s errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import threadline
from threadline import PluginNotInstalledError, hookimpl
from threadline.plugins import register, store_registry, unregister
from threadline.urls import StoreURL


def run_python(code: str, **env: str) -> str:
    full_env = {k: v for k, v in os.environ.items() if k != "THREADLINE_LOAD_PLUGINS"}
    full_env.update(env)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        check=True,
        timeout=60,
    )
    return done.stdout


def test_environment_variable_restricts_loaded_plugins() -> None:
    code = """
        from threadline.plugins import store_registry
        print(sorted(store_registry()))
    """
    assert run_python(code, THREADLINE_LOAD_PLUGINS="") == "[]\n"
    assert run_python(code, THREADLINE_LOAD_PLUGINS="threadline-memory") == "['memory']\n"
    assert "'memory'" in run_python(code)  # unset: everything installed loads


def test_plugins_load_lazily() -> None:
    code = """
        import sys, threadline
        print("threadline_memory" in sys.modules)
        from threadline.plugins import store_registry
        store_registry(); store_registry()
        print("threadline_memory" in sys.modules)
    """
    assert run_python(code, THREADLINE_LOAD_PLUGINS="threadline-memory") == "False\nTrue\n"


def test_threadline_plugins_prints_json_like_llm() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "threadline.cli", "plugins"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "THREADLINE_LOAD_PLUGINS": "threadline-memory"},
    ).stdout
    data = json.loads(out)
    assert data == [
        {
            "name": "threadline-memory",
            "hooks": ["threadline_register_stores"],
            "version": data[0]["version"],
        }
    ]


def test_unknown_scheme_names_the_plugin_to_install() -> None:
    code = """
        import asyncio, threadline
        try:
            asyncio.run(threadline.connect("postgresql://db.internal/app"))
        except threadline.PluginNotInstalledError as exc:
            print(exc)
    """
    out = run_python(code, THREADLINE_LOAD_PLUGINS="")
    assert "no store plugin serves postgresql:// URLs; pip install threadline-postgres" in out


async def test_unknown_scheme_and_bad_urls_are_refused() -> None:
    with pytest.raises(PluginNotInstalledError, match="no store plugin serves nosuch://"):
        await threadline.connect("nosuch://x")
    with pytest.raises(threadline.ConfigurationError, match="not a store URL"):
        await threadline.connect("chat.db")


async def test_a_registered_plugin_serves_its_scheme() -> None:
    opened: list[StoreURL] = []

    class DemoPlugin:
        @hookimpl
        def threadline_register_stores(self, register: Callable[..., None]) -> None:
            async def factory(url: StoreURL) -> object:
                opened.append(url)
                from threadline_memory import MemoryStore

                return MemoryStore()

            register("demo", factory, "a test scheme")

    register(DemoPlugin(), name="demo-plugin")
    try:
        assert "demo" in store_registry()
        store = await threadline.connect("demo://user:hunter2@host:5/db?x=1")
        assert opened[0].password == "hunter2"
        assert "hunter2" not in repr(store) and "hunter2" not in repr(opened[0])
        assert opened[0].query == {"x": "1"} and opened[0].port == 5
        await store.close()
    finally:
        unregister("demo-plugin")
    assert "demo" not in store_registry()


def test_store_url_redacts_passwords() -> None:
    url = StoreURL.parse("postgresql://app:s%40cret@db:5432/prod?sslmode=require")
    assert url.password == "s@cret"
    assert url.redacted() == "postgresql://app:***@db:5432/prod?sslmode=require"
    assert "cret" not in str(url) and "cret" not in repr(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:pw@[::1:5444/db",  # an unclosed IPv6 bracket
        "postgresql://u:pw@db:99999/app",  # a port out of range
        "postgresql://u:pw@db:port/app",
        "postgresql://u:pw\uff03x@db/app",  # invalid under NFKC normalisation
        "://u:pw@db/app",  # no scheme
        "1sql://u:pw@db/app",  # a scheme must start with a letter
    ],
)
async def test_malformed_urls_are_configuration_errors_without_the_password(url: str) -> None:
    with pytest.raises(threadline.ConfigurationError) as parsed:
        StoreURL.parse(url)
    with pytest.raises(threadline.ConfigurationError) as connected:
        await threadline.connect(url)
    for error in (parsed.value, connected.value):
        assert "pw" not in str(error) and "***@" in str(error)


_url_text = st.text(
    alphabet=st.sampled_from(list("aZ09:/@[]%?#&=.+-_ \\\x00\t\n\uff03\u00e9")), max_size=30
)


@settings(max_examples=400, deadline=None)
@given(
    url=st.one_of(
        st.text(max_size=40),
        st.builds(
            lambda scheme, rest: f"{scheme}://{rest}",
            st.sampled_from(["postgresql", "sqlite", "fsspec+ftp", "s3", "", "1x", "a b"]),
            _url_text,
        ),
    )
)
def test_store_url_parse_raises_nothing_but_configuration_error(url: str) -> None:
    try:
        parsed = StoreURL.parse(url)
    except threadline.ConfigurationError:
        return
    assert parsed.scheme and parsed.raw == url
    repr(parsed), parsed.redacted()  # both shown in error messages: they must not raise


def test_unknown_plugin_names_in_the_variable_are_a_warning() -> None:
    code = """
        import warnings
        from threadline.plugins import store_registry
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            print(sorted(store_registry()))
        for w in caught:
            print(f"{w.category.__name__}: {w.message}")
    """
    out = run_python(code, THREADLINE_LOAD_PLUGINS="nosuch,threadline-memory")
    scheme, warning = out.splitlines()
    assert scheme == "['memory']"  # what exists still loads
    assert warning.startswith("PluginWarning: THREADLINE_LOAD_PLUGINS names nosuch, which no")
    assert "installed: " in warning and "threadline-memory" in warning
    # Spelled the way pip would accept it, a distribution name matches: no warning.
    assert run_python(code, THREADLINE_LOAD_PLUGINS="Threadline_Memory") == "['memory']\n"
    assert run_python(code, THREADLINE_LOAD_PLUGINS="") == "[]\n"  # empty: load none, quietly


def test_the_cli_shows_the_unknown_plugin_warning() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "threadline.cli", "plugins"],
        capture_output=True,
        text=True,
        env={**os.environ, "THREADLINE_LOAD_PLUGINS": "nosuch"},
        timeout=60,
    )
    assert done.returncode == 0 and json.loads(done.stdout) == []
    assert "THREADLINE_LOAD_PLUGINS names nosuch, which no installed plugin provides" in (
        done.stderr
    )
