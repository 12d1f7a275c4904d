"""The run folder's safety rules, in one place.

- Every path a run writes or deletes is a direct child of the run folder with a safe name (`child`), so no
  recipe or profile name can point a write or an `rmtree` elsewhere.
- Files at the top of the run folder (the lock, the published reports, recipe.json) are never written through a
  symbolic link: the lock is opened with O_NOFOLLOW and the others are replaced by a rename (`write_top`).
- One run at a time per folder: an OS-level lock (`flock`) held for the whole run (`RunLock`); a second run
  reads who holds it and stops.
- A finished stage folder is replaced by a rename swap (`replace_folder`): the old folder is renamed aside, the
  new one renamed into place, then the old one deleted. A crash at any point leaves the old or the new folder,
  and the next run puts an orphaned old folder back (`recover`), so a kill never loses finished work.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path

from .errors import EdgesmithError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
STAGE_FOLDER = re.compile(r"\d\d-[A-Za-z0-9._-]+")  # 00-data, 05-export-structured, 08-bundle-mobile-cpu
LOCK_FILE = ".edgesmith.lock"
TMP_SUFFIX, OLD_SUFFIX = ".tmp", ".old"
TOP_FILES = (LOCK_FILE, "report.md", "report.html", "summary.json", "recipe.json")  # what a run writes beside its stages


def check_name(name: str, what: str) -> str:
    """A name that may become part of a folder name: letters, digits, '.', '_', '-'; no '..', no separators."""
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{what} {name!r} is not a safe name; use letters, digits, '.', '_' or '-' (at most 80, no '..')")
    return name


def child(root: Path, name: str) -> Path:
    """root/name, refusing any name that would land outside root (the assertion every stage folder passes)."""
    try:
        check_name(name, "folder name")
    except ValueError as err:
        raise EdgesmithError(str(err)) from None
    path = root / name
    if path.resolve().parent != root.resolve():
        raise EdgesmithError(f"{path} resolves outside the run folder {root}; remove the link or pick another --out")
    return path


def write_top(root: Path, name: str, data: bytes) -> None:
    """root/name holds `data`, written to a new file and renamed into place: a rename replaces a link planted there
    instead of writing through it to its target, and a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{name}.", suffix=".part")  # O_EXCL: never an existing file
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, root / check_name(name, "file name"))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temp_for(folder: Path) -> Path:
    return folder.parent / f".{folder.name}{TMP_SUFFIX}"


def old_for(folder: Path) -> Path:
    return folder.parent / f".{folder.name}{OLD_SUFFIX}"


def replace_folder(new: Path, folder: Path) -> None:
    """Put `new` where `folder` is, by renames only (see the module docstring)."""
    old = old_for(folder)
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def recover(root: Path) -> list[str]:
    """After a crash: put back stage folders left aside by an interrupted swap and delete half-written ones.

    Only called under the run lock, so nothing else is writing here. Returns what it did, for the log."""
    done = []
    for path in _leftovers(root, OLD_SUFFIX):
        target = root / path.name[1: -len(OLD_SUFFIX)]
        if target.exists():
            shutil.rmtree(path)
            done.append(f"removed {path.name} (the swap had finished)")
        else:
            path.rename(target)
            done.append(f"restored {target.name} from an interrupted swap")
    for path in _leftovers(root, TMP_SUFFIX):
        shutil.rmtree(path)
        done.append(f"removed the unfinished {path.name}")
    return done


def _leftovers(root: Path, suffix: str) -> list[Path]:
    """Hidden `.NN-stage.tmp` / `.NN-stage.old` folders: only those edgesmith makes, never a user's own."""
    return sorted(p for p in root.glob(f".*{suffix}")
                  if p.is_dir() and not p.is_symlink() and STAGE_FOLDER.fullmatch(p.name[1: -len(suffix)]))


def check_run_folder(root: Path) -> None:
    """An existing --out must be empty or an edgesmith run folder: a run writes and replaces folders there; and no
    file may stand where it or a folder above it would be (read-only: a dry run checks it too)."""
    existing = next((p for p in (root, *root.parents) if p.exists() or p.is_symlink()), None)
    if existing is not None and not existing.is_dir():
        raise EdgesmithError(f"--out {root}: a file is in the way of the run folder ({existing}); pass a folder path")
    if not root.is_dir():
        return
    entries = list(root.iterdir())
    linked = [name for name in TOP_FILES if (root / name).is_symlink()]
    if linked:
        raise EdgesmithError(f"--out {root}: {', '.join(linked)} {'is a symbolic link' if len(linked) == 1 else 'are symbolic links'}, "
                             "which a run would write through; remove them or pass another --out")
    ours = (root / LOCK_FILE).is_file() or any(_is_stage_folder(p) for p in entries)
    if entries and not ours:
        raise EdgesmithError(f"--out {root} is not empty and not an edgesmith run folder; pass a new or empty folder")


STAGE_MANIFEST_KEYS = {"stage", "stage_version", "key", "digest"}  # what artifacts.py writes into every stage's manifest
MAX_STAGE_MANIFEST = 64 * 2**20


def _is_stage_folder(path: Path) -> bool:
    """A stage folder edgesmith wrote: an `NN-name` folder whose manifest.json is edgesmith's. A name and a file called
    manifest.json are not enough: a dataset's `00-data/manifest.json` had made a user's folder pass for a run folder,
    and the run replaced the folder, deleting the data beside it."""
    manifest = path / "manifest.json"
    if not STAGE_FOLDER.fullmatch(path.name) or path.is_symlink() or not manifest.is_file():
        return False
    try:
        if manifest.stat().st_size > MAX_STAGE_MANIFEST:
            return False
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and STAGE_MANIFEST_KEYS <= data.keys()


class RunLock:
    """An exclusive `flock` on RUN/.edgesmith.lock for the life of a run. The file records the holder (pid, host,
    start time) so a second run can say who has the folder; the lock itself dies with the process, even on kill -9."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        try:  # O_NOFOLLOW: a link planted as the lock file would have its target truncated below
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise
            raise EdgesmithError(f"{self.path} is a symbolic link; remove it or pass another --out") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise EdgesmithError(f"{self.path} is not a regular file; remove it or pass another --out")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise EdgesmithError(f"run folder {self.path.parent} is in use by another edgesmith run ({holder}); "
                                 "wait for it to finish or pass another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock; the file stays (deleting it would race a waiting run)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (ValueError, KeyError, OSError):
        return "holder unknown"


def is_empty_run(root: Path) -> bool:
    """True when a run folder holds nothing but its lock file (a fresh run that failed before any stage finished)."""
    return all(p.name == LOCK_FILE for p in root.iterdir())
