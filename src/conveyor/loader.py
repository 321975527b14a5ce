"""Find a Conveyor from an APP path (`module` or `module:attribute`), as uvicorn finds apps."""

from __future__ import annotations

import importlib
import os
import sys

from .app import Conveyor
from .errors import ConfigError


def load_app(path: str) -> Conveyor:
    """Import `module[:attribute]` and return the Conveyor it names.

    Without an attribute, the module's `app` is used, else its only Conveyor. Raises
    ConfigError with a one-line message for each way this can go wrong.
    """
    if not path or path.count(":") > 1:
        raise ConfigError(f"bad APP {path!r}: expected 'module' or 'module:attribute'")
    module_name, _, attr = path.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(f"cannot load APP {path!r}: module {module_name!r} not found "
                              f"(run from the directory that contains it, or set PYTHONPATH)"
                              ) from None
        raise ConfigError(f"cannot load APP {path!r}: importing {module_name!r} failed: "
                          f"{exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"cannot load APP {path!r}: {exc}") from None
    except Exception as exc:
        raise ConfigError(f"cannot load APP {path!r}: importing {module_name!r} raised "
                          f"{type(exc).__name__}: {exc}") from None
    if attr:
        obj: object = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ConfigError(f"cannot load APP {path!r}: module {module_name!r} has no "
                                  f"attribute {attr!r}")
            obj = getattr(obj, part)
    else:
        found = [v for v in vars(module).values() if isinstance(v, Conveyor)]
        candidate = getattr(module, "app", None)
        if isinstance(candidate, Conveyor):
            obj = candidate
        elif len(found) == 1:
            obj = found[0]
        elif not found:
            raise ConfigError(f"cannot load APP {path!r}: module {module_name!r} has no "
                              "Conveyor (name it with module:attribute)")
        else:
            raise ConfigError(f"cannot load APP {path!r}: module {module_name!r} has several "
                              "Conveyor objects; name one with module:attribute")
    if not isinstance(obj, Conveyor):
        raise ConfigError(f"cannot load APP {path!r}: {attr!r} is a {type(obj).__name__}, "
                          "not a Conveyor")
    return obj
