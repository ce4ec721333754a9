"""Lazy attributes for packages (PEP 562): public names and submodules are
imported on first use, so ``import spmcli`` stays light and the command line
pays only for what a command needs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import import_module
from typing import Any


def lazy_attributes(
    package: str, namespace: dict[str, Any], exports: dict[str, str], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``.

    ``exports`` maps a public name to the submodule (relative to ``package``)
    that defines it; ``submodules`` are reachable as attributes themselves.
    A loaded value is cached in ``namespace`` (the package's ``globals()``).
    """
    submodules = tuple(submodules)

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(import_module(f"{package}.{exports[name]}"), name)
        elif name in submodules:
            value = import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports, *submodules})

    return __getattr__, __dir__
