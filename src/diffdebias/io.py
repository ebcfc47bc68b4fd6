"""Atomic file writing, write-failure reporting, output-directory checks and small JSON helpers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import RunBusy, RunError

TMP_SUFFIX = ".tmp"
LOCK_NAME = ".lock"


def write_failure(path: str | os.PathLike, exc: BaseException) -> RunError:
    """The error for a failed write of `path` (disk full, permission, ...): the old file is intact."""
    reason = getattr(exc, "strerror", None) or str(exc)
    return RunError(
        f"{path}: writing failed ({reason}); the previous version of this file, if any, is intact. "
        "Free disk space or fix the permissions, then rerun the command (`diffdebias run` with --resume)"
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    An OSError while writing (disk full, permission) becomes a RunError naming `path`; the
    temporary file is removed and `path` keeps its previous content.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise write_failure(path, exc) from exc
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        raise write_failure(path, exc) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (not all file systems allow fsync on a directory: then skip)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files an interrupted :func:`atomic_path` left in `folder` (not recursive)."""
    removed = []
    for p in Path(folder).glob(f".*{TMP_SUFFIX}"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def append_jsonl(path: str | os.PathLike, obj: Any) -> None:
    """Append one JSON line (a single write call, flushed and fsynced)."""
    line = json.dumps(obj, sort_keys=True, default=_json_default) + "\n"
    try:
        with open(path, "a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise write_failure(path, exc) from exc


def file_digest(*paths: str | os.PathLike) -> str:
    """blake2b digest of the bytes of `paths` (in order), to verify cached files before use."""
    return _hash_files(hashlib.blake2b(digest_size=16), paths)


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (the checksum a shared file's card records)."""
    return _hash_files(hashlib.sha256(), (path,))


def _hash_files(h: Any, paths: Iterable[str | os.PathLike]) -> str:
    for p in paths:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def check_output_dir(folder: str | os.PathLike, need_bytes: int = 0, *, what: str = "--out") -> None:
    """Fail before long work starts if `folder` cannot be created, written to or hold `need_bytes`.

    Writability is probed by creating (and removing) a file, which also catches read-only mounts.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{folder}: cannot create the output directory ({exc.strerror or exc}); choose another {what}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=TMP_SUFFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RunError(f"{folder}: the output directory is not writable ({exc.strerror or exc}); fix its permissions or choose another {what}") from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise RunError(
            f"{folder}: only {free / 2**20:.0f} MiB free, about {need_bytes / 2**20:.0f} MiB needed for this run's files; "
            f"free space or choose another {what}"
        )


@contextlib.contextmanager
def exclusive(folder: str | os.PathLike, what: str, *, wait: bool = False) -> Iterator[None]:
    """Hold `folder`'s lock (an flock on `folder/.lock`) for the block, so that two processes never
    write one run. A second process raises RunBusy at once, or with `wait` waits for the first.
    The OS drops the lock when its holder exits, crashed or killed, so no stale lock outlives it."""
    import fcntl

    folder = Path(folder)
    check_output_dir(folder)
    try:
        fh = open(folder / LOCK_NAME, "a+")
    except OSError as exc:
        raise RunError(f"{folder / LOCK_NAME}: cannot open the lock file ({exc.strerror or exc}); fix the folder's permissions or choose another --out") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            if not wait:
                raise RunBusy(f"{folder}: {holder} is running this {what} now; wait for it to finish, or stop it and rerun (the run resumes), or choose another --out") from None
            print(f"{folder}: waiting for {holder}, which is running this {what}", flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError as exc:  # a filesystem without locks (some network mounts): go on, unguarded
            print(f"warning: {folder}: cannot lock ({exc.strerror or exc}); nothing stops a second process from writing here too", flush=True)
        fh.truncate(0)
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        yield


def build_lock(folder: str | os.PathLike, what: str, processes: int) -> contextlib.AbstractContextManager:
    """While one process builds `folder` (a cached generator or sample set), another one waits and
    then finds it built. The ranks of one multi-process launch coordinate by barriers instead."""
    return exclusive(folder, what, wait=True) if processes == 1 else contextlib.nullcontext()


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
