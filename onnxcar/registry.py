"""Named registries that extension points share: criteria, runners and op handlers.

A separate package extends onnxcar without editing it by naming, in an entry point group
``onnxcar.plugins``, a module that registers what it adds when imported::

    [project.entry-points."onnxcar.plugins"]
    my_criterion = "my_package.criterion"

Plugins load once, the first time any registry is read. A plugin that fails to load is a
warning naming it, and is skipped: every command (and ``--help``) still works, and asking a
registry for a name it does not hold names the plugins that failed.
"""

import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from onnxcar.errors import OnnxcarError

PLUGIN_GROUP = "onnxcar.plugins"
T = TypeVar("T")
log = logging.getLogger(__name__)
_plugins_loaded = False
_failed_plugins: dict[str, str] = {}  # plugin -> why it did not load


def load_plugins() -> None:
    """Imports every module named in the ``onnxcar.plugins`` entry point group (once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for point in entry_points(group=PLUGIN_GROUP):
        try:
            point.load()
        except Exception as err:
            reason = " ".join(f"{type(err).__name__}: {err}".split())
            _failed_plugins[f"{point.name!r} ({point.value})"] = reason
            log.warning("the onnxcar plugin %r (%s) failed to load and is skipped: %s", point.name, point.value, reason)
            continue
        log.debug("loaded plugin %s (%s)", point.name, point.value)


class Registry(Generic[T]):
    """Entries by name; built-in entries register on import, plugins on first read."""

    def __init__(self, kind: str, builtins: Callable[[], None] = lambda: None):
        self.kind = kind
        self._builtins = builtins
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Registers ``entry`` under ``name``; a later registration of a name replaces the earlier."""
        if name in self._entries:
            log.debug("%s %r re-registered", self.kind, name)
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        self._load()
        if name not in self._entries:
            failed = "".join(f"; the plugin {plugin} failed to load: {why}" for plugin, why in _failed_plugins.items())
            raise OnnxcarError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}{failed}")
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        self._load()
        return tuple(self._entries)

    def __iter__(self) -> Iterator[T]:
        self._load()
        return iter(list(self._entries.values()))

    def _load(self) -> None:
        self._builtins()
        load_plugins()
