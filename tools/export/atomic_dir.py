"""Write-then-rename for package directories (docs/reliability.md, "Atomic writes").

A package is written whole into a staging directory next to its destination (same file system),
flushed to disk, and renamed into place, so the destination's name only ever holds a complete old
package or a complete new one, never a half-written one:

    stage = staging_dir(dest)              # an empty sibling, or staged_copy(dest) to edit a package
    ... write the files into stage ...
    install_dir(stage, dest)               # fsync, then one rename (or an atomic exchange)

Replacing an existing directory uses Linux's renameat2(RENAME_EXCHANGE), which swaps the two names
in one step; where that is not available the old directory is first renamed aside, which leaves
the name briefly missing (but never half-written). Only the standard library is used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import tempfile

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def staging_dir(dest: str, tag: str = "stage") -> str:
    """A new empty directory next to `dest` (created with the parent if needed)."""
    dest = os.path.abspath(dest)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.{tag}-", dir=parent)


def staged_copy(src: str, skip: set[str] | frozenset[str] = frozenset()) -> str:
    """A staging directory next to `src` holding its entries (hard links where the file system
    allows, else copies; symbolic links as links), except the names in `skip`, which the caller
    writes anew. Nothing in `src` is modified."""
    stage = staging_dir(src, "edit")
    try:
        for entry in os.scandir(src):
            if entry.name in skip:
                continue
            target = os.path.join(stage, entry.name)
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
            elif entry.is_dir():
                shutil.copytree(entry.path, target, symlinks=True)
            else:
                try:
                    os.link(entry.path, target)
                except OSError:
                    shutil.copy2(entry.path, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage


def fsync_tree(path: str) -> None:
    """Flush every regular file under `path`, then the directories, to disk."""
    for root, dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if os.path.islink(p):
                continue
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(root)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory
    finally:
        os.close(fd)


def _exchange(a: str, b: str) -> bool:
    """Swap the names `a` and `b` in one step (Linux renameat2 RENAME_EXCHANGE); False where the
    system or the file system does not support it."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def install_dir(stage: str, dest: str) -> None:
    """Move the complete directory `stage` to `dest` (a sibling), replacing what `dest` held.
    `stage` no longer exists afterwards."""
    stage, dest = os.path.abspath(stage), os.path.abspath(dest)
    parent = os.path.dirname(dest)
    if os.path.dirname(stage) != parent:
        raise ValueError(f"{stage} is not next to {dest}: the rename would not be atomic")
    os.chmod(stage, 0o755)
    fsync_tree(stage)
    if not os.path.lexists(dest):
        os.rename(stage, dest)
    elif _exchange(stage, dest):
        # `stage` now names the old contents.
        _remove(stage)
    else:
        aside = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.old-", dir=parent)
        os.rmdir(aside)
        os.rename(dest, aside)
        os.rename(stage, dest)
        _remove(aside)
    _fsync_dir(parent)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)
