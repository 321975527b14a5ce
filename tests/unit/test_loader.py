"""loader.py: finding the Conveyor an APP path names, and a one-line error for each mistake."""

from __future__ import annotations

import itertools
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor import ConfigError, Conveyor
from conveyor.loader import load_app

_counter = itertools.count()

MakeModule = Callable[[str], str]


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeModule]:
    """Write a module with a fresh, unique name on a temporary sys.path; returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))  # also restores sys.path if the loader edits it
    made: list[str] = []

    def make(source: str) -> str:
        name = f"conveyor_loader_probe_{next(_counter)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        made.append(name)
        return name

    yield make
    for name in made:
        sys.modules.pop(name, None)


ONE_APP = """
    from conveyor import Conveyor
    app = Conveyor("memory://")
"""


def test_module_defaults_to_app(make_module: MakeModule) -> None:
    name = make_module(ONE_APP)
    app = load_app(name)
    assert isinstance(app, Conveyor)
    assert app is sys.modules[name].app


def test_app_wins_over_other_conveyors(make_module: MakeModule) -> None:
    name = make_module("""
        from conveyor import Conveyor
        other = Conveyor("memory://")
        app = Conveyor("memory://")
    """)
    assert load_app(name) is sys.modules[name].app


def test_only_conveyor_under_another_name(make_module: MakeModule) -> None:
    name = make_module("""
        from conveyor import Conveyor
        queue = Conveyor("memory://")
    """)
    app = load_app(name)
    assert app is sys.modules[name].queue


def test_module_colon_attribute(make_module: MakeModule) -> None:
    name = make_module("""
        from conveyor import Conveyor
        fast = Conveyor("memory://")
        slow = Conveyor("memory://")
    """)
    assert load_app(f"{name}:slow") is sys.modules[name].slow


def test_dotted_attribute(make_module: MakeModule) -> None:
    name = make_module("""
        from conveyor import Conveyor
        class settings:
            queue = Conveyor("memory://")
    """)
    assert load_app(f"{name}:settings.queue") is sys.modules[name].settings.queue


def test_tasks_are_registered_on_load(make_module: MakeModule) -> None:
    name = make_module(ONE_APP + """
    @app.task
    def add(a, b):
        return a + b
    """)
    assert f"{name}.add" in load_app(name).tasks


def test_module_not_found() -> None:
    with pytest.raises(ConfigError, match="module 'no_such_module_xyz' not found"):
        load_app("no_such_module_xyz")
    with pytest.raises(ConfigError, match="not found"):
        load_app("no_such_package_xyz.tasks:app")


def test_module_importing_something_missing(make_module: MakeModule) -> None:
    name = make_module("import no_such_dependency_xyz\n")
    with pytest.raises(ConfigError, match=f"importing '{name}' failed.*no_such_dependency_xyz"):
        load_app(name)


def test_module_raising_on_import(make_module: MakeModule) -> None:
    name = make_module("raise RuntimeError('broken settings')\n")
    with pytest.raises(ConfigError, match="RuntimeError: broken settings"):
        load_app(name)


def test_module_with_config_error(make_module: MakeModule) -> None:
    name = make_module("""
        from conveyor import Conveyor
        app = Conveyor("nosuch://x")
    """)
    with pytest.raises(ConfigError, match=f"cannot load APP '{name}'.*nosuch://x"):
        load_app(name)


def test_attribute_missing(make_module: MakeModule) -> None:
    name = make_module(ONE_APP)
    with pytest.raises(ConfigError, match=f"module '{name}' has no attribute 'worker'"):
        load_app(f"{name}:worker")


def test_attribute_not_a_conveyor(make_module: MakeModule) -> None:
    name = make_module(ONE_APP + "    settings = {'a': 1}\n")
    with pytest.raises(ConfigError, match="'settings' is a dict, not a Conveyor"):
        load_app(f"{name}:settings")


def test_app_attribute_not_a_conveyor_and_no_other(make_module: MakeModule) -> None:
    name = make_module("app = 'not an app'\n")
    with pytest.raises(ConfigError, match="has no Conveyor"):
        load_app(name)


def test_module_without_conveyor(make_module: MakeModule) -> None:
    name = make_module("x = 1\n")
    with pytest.raises(ConfigError, match=f"module '{name}' has no Conveyor"):
        load_app(name)


def test_module_with_several_apps(make_module: MakeModule) -> None:
    name = make_module("""
        from conveyor import Conveyor
        one = Conveyor("memory://")
        two = Conveyor("memory://")
    """)
    with pytest.raises(ConfigError, match="several Conveyor objects.*module:attribute"):
        load_app(name)


@pytest.mark.parametrize("path", ["", "a:b:c"])
def test_bad_app_path(path: str) -> None:
    with pytest.raises(ConfigError, match="module:attribute"):
        load_app(path)


def test_errors_are_one_line(make_module: MakeModule) -> None:
    name = make_module("raise ValueError('x')\n")
    with pytest.raises(ConfigError) as info:
        load_app(name)
    assert "\n" not in str(info.value)
    assert info.value.__suppress_context__  # no chained traceback for a user mistake
