"""PKCS#11 libraries loaded in this process, one lock each.

A PKCS#11 library is process-global state (C_Initialize once per process),
and python-pkcs11 initialises it without OS locking, so SoftHSM2 and many
vendor libraries must not be entered from two threads at once. Every call
into a library therefore holds that library's lock; tokens of the same
library share it. The table is keyed by process id too: a forked child must
load the library afresh (each uvicorn worker opens its own deployment).

A module's environment (``module_env``, e.g. ``SOFTHSM2_CONF``) is set while
it initialises — SoftHSM2 reads its configuration in C_Initialize — and
restored afterwards, so two modules in one process can have different
configurations.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pkcs11

from kmsframe.errors import ConfigurationError

_table_lock = threading.Lock()
_loaded: dict[tuple[int, str], Library] = {}


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Library:
    """A loaded module and the lock that serialises every call into it."""

    def __init__(self, path: str, env: Mapping[str, str], handle: Any) -> None:
        self.path = path
        self.env = dict(env)
        self.handle = handle
        self.lock = threading.RLock()
        # Bumped on every re-initialise so sessions opened before know they are dead.
        self.generation = 0

    def reinitialize(self) -> None:
        """C_Finalize + C_Initialize: every session of this library is gone after."""
        with self.lock, _table_lock, _environment(self.env):
            try:
                self.handle.finalize()
            except pkcs11.PKCS11Error:
                pass
            self.handle.initialize()
            self.generation += 1


def load(path: str, env: Mapping[str, str]) -> Library:
    """The process's instance of the module at ``path``, loading it on first use.

    A module already loaded with a different environment is a configuration
    error rather than a silent surprise.
    """
    key = (os.getpid(), path)
    with _table_lock:
        lib = _loaded.get(key)
        if lib is not None:
            if dict(env) != lib.env:
                raise ConfigurationError(
                    f"hsm: module {path} is already loaded in this process with another "
                    "module_env")
            return lib
        if not os.path.exists(path):
            raise ConfigurationError(f"hsm: PKCS#11 module {path} does not exist")
        inherited = next((lib.handle for (pid, p), lib in _loaded.items() if p == path), None)
        try:
            with _environment(env):
                if inherited is not None:
                    # A forked child: the module's memory (sessions, login) was
                    # copied from the parent and must not be used; PKCS#11 says
                    # the child calls C_Initialize afresh.
                    try:
                        inherited.finalize()
                    except pkcs11.PKCS11Error:
                        pass
                    inherited.initialize()
                    handle = inherited
                else:
                    handle = pkcs11.lib(path)
        except pkcs11.PKCS11Error as exc:
            raise ConfigurationError(f"hsm: cannot load PKCS#11 module {path}: {exc}") from None
        lib = Library(path, env, handle)
        _loaded[key] = lib
        return lib
