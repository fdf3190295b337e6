"""The temporary files our saves write before a file gets its final name.

A save writes `.<final name>.<host>.<pid>.<random>.hyperlora-tmp` next to its destination (same file
system, so the final step is a link or a rename), then publishes it. A writer that makes temporaries
of its own (safetensors' `save_file` writes a `.tmpXXXXXX` beside its target) gets our temporary as a
folder to write into, so its files are ours to remove too. Nothing is lost or left behind:

* the final name is claimed atomically (`os.link` fails if the name exists), so two processes, e.g.
  two ComfyUI servers sharing one output folder, never write the same file;
* SIGTERM removes the temporaries this process is writing (the handler is installed from the main
  thread, at import, and then runs the previous handler);
* a process killed outright (SIGKILL, power loss) leaves its temporary; the next save into that
  folder sweeps it, once its process is gone (same host) or it is a day old (another host);
* a published file gets ComfyUI's mode (0666 less the umask, 0644 usually), not a temporary's 0600.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import HyperLoRAError, os_error_message

log = logging.getLogger(__name__)

SUFFIX = ".hyperlora-tmp"
STALE_SECONDS = 24 * 3600
"""A temporary from another host is swept once this old (its process cannot be asked)."""

_LIVE: set[Path] = set()
_LOCK = threading.Lock()
_INSTALLED = False


def _host() -> str:
    return socket.gethostname().replace(".", "-") or "host"


def _remove(path: Path) -> None:
    """Delete a temporary, a file or a folder another writer filled."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def temporary(folder: Path, final_name: str) -> Iterator[Path]:
    """A fresh temporary path in `folder` (write a file there, or make it a folder), removed on exit,
    on SIGTERM, or by a later sweep."""
    sweep(folder)
    install_signal_cleanup()
    path = folder / f".{final_name}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}{SUFFIX}"
    with _LOCK:
        _LIVE.add(path)
    try:
        yield path
    finally:
        _remove(path)
        with _LOCK:
            _LIVE.discard(path)


@contextlib.contextmanager
def tracked(path: Path) -> Iterator[Path]:
    """A temporary named by its writer's own rule (e.g. a trainer checkpoint's `.tmp-step-N/` folder, which
    every rank writes into): removed on SIGTERM while the block runs, like ours."""
    install_signal_cleanup()
    with _LOCK:
        _LIVE.add(path)
    try:
        yield path
    finally:
        with _LOCK:
            _LIVE.discard(path)


def file_mode() -> int:
    """The mode `open()` gives a new file here (0666 less the umask), as ComfyUI's own saves have.

    Read from /proc where it can be: setting the umask to read it would race other threads' files."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Write `path`'s new content into the yielded temporary; on success it replaces `path` at once.

    An OSError (disk full, read-only, permissions) becomes our message naming `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temporary(path.parent, path.name) as tmp:
            yield tmp
            os.chmod(tmp, file_mode())
            os.replace(tmp, path)
    except OSError as exc:
        raise HyperLoRAError(os_error_message(path, exc, "write")) from None


def publish(tmp: Path, path: Path, overwrite: bool) -> bool:
    """Give the written `tmp` the name `path`; False if `path` exists and may not be replaced."""
    if overwrite:
        os.replace(tmp, path)
        return True
    try:
        os.link(tmp, path)  # fails if the name exists: the claim and the write are one step
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
            raise
    # a file system without hard links: claim the name with an exclusive create, then replace it
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    os.replace(tmp, path)
    return True


def _owner(path: Path) -> tuple[str, int] | None:
    parts = path.name[: -len(SUFFIX)].rsplit(".", 3)
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


def sweep(folder: Path) -> list[Path]:
    """Remove temporaries in `folder` left by processes that died; returns what was removed."""
    removed = []
    try:
        found = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(SUFFIX)]
    except OSError:
        return removed
    for path in found:
        owner = _owner(path)
        with _LOCK:
            if path in _LIVE:
                continue
        try:
            if owner is not None and owner[0] == _host():
                stale = owner[1] == os.getpid() or not _alive(owner[1])
            else:
                stale = time.time() - path.stat().st_mtime > STALE_SECONDS
            if stale:
                _remove(path)
                removed.append(path)
                log.info("HyperLoRA: removed %s, left by an interrupted save", path)
        except OSError:
            continue
    return removed


def remove_live() -> None:
    """Delete every temporary this process is writing now (the signal handler's job)."""
    with _LOCK:
        live = list(_LIVE)
    for path in live:
        with contextlib.suppress(OSError):
            _remove(path)


def install_signal_cleanup() -> None:
    """Once per process, from the main thread (the only one that may set handlers): on SIGTERM
    remove live temporaries, then do what was set before (ComfyUI's handler, or terminate)."""
    global _INSTALLED
    if _INSTALLED or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        remove_live()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, on_term)
    _INSTALLED = True
