"""Files with user-facing errors: text inputs decoded with a located message, and output files.

``read_utf8`` reads a text input (rule, spec or config file); bytes that are
not UTF-8 are reported at line:column, as any other mistake in the file.


Every file rewriter writes (the model, its external data, the report, the
audit output) goes through ``atomic_write``, which replaces the destination
with a new regular file in one rename. That is only safe when the destination
is a regular file or does not exist yet: a rename over ``/dev/null`` would
replace the device, a rename over a symbolic link would replace the link.
``check_output_path`` refuses the rest; ``check_outputs`` runs it on all of a
command's outputs before any work starts, and also refuses an output that is
one of the inputs or another output.

A run killed with SIGKILL cannot remove its temporary file; the next write
to the same destination removes such temporaries once their process is gone
(``remove_stale_temporaries``). A write that must replace several files as a
whole (a model and its external data) holds ``folder_lock`` while it renames.
"""
from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO, Callable

from rewriter.errors import SourceLoc, UserError, source_excerpt

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "check_output_path", "check_outputs",
           "folder_lock", "read_utf8", "remove_stale_temporaries", "write_temporary"]

def cannot_look_up(text: str, exc: BaseException) -> str:
    """``'<path, cut to 80 characters>' cannot be looked up: <reason>``, for a located error when the file
    system cannot even look a path up (a name too long, a symlink loop, an unknown user's ``~``: the
    OSError or RuntimeError pathlib raises)."""
    shown = text[:80] + ("..." if len(text) > 80 else "")
    return f"'{shown}' cannot be looked up: {getattr(exc, 'strerror', None) or exc}"


def read_utf8(path: str | os.PathLike[str]) -> str:
    """The text of a UTF-8 file, without a leading byte-order mark.

    Raises:
        OSError: the file cannot be read.
        UserError: it is not UTF-8, located at the line and column (in characters) of the
            first byte that is not, with the line shown.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(data, exc.start, os.fspath(path)) from None
    return text[1:] if text.startswith("\ufeff") else text


def _not_utf8(data: bytes, start: int, file: str) -> UserError:
    line_start = data.rfind(b"\n", 0, start) + 1
    line_end = data.find(b"\n", start)
    shown = data[line_start:len(data) if line_end < 0 else line_end].decode("utf-8", errors="replace")
    line = data.count(b"\n", 0, start) + 1
    column = len(data[line_start:start].decode("utf-8", errors="replace")) + 1
    return UserError(f"byte 0x{data[start]:02X} is not UTF-8 text; save the file as UTF-8",
                     SourceLoc(file, line, column), source_excerpt(shown, 1, column))


_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
          (stat.S_ISSOCK, "a socket"))


def _named(path: str | os.PathLike[str], option: str) -> str:
    return f"{option} {os.fspath(path)}" if option else os.fspath(path)


def check_output_path(path: str | os.PathLike[str], option: str = "", follow_symlinks: bool = False) -> Path:
    """The file to write for ``path``, refusing destinations a write would damage or cannot reach.

    Args:
        path: the destination as the user gave it.
        option: the command-line option that named it (``-o``, ``--report``), for the message.
        follow_symlinks: a symbolic link is allowed and its target is written (the link stays).

    Returns:
        The path to write: ``path`` itself, or the target of the link it names when
        ``follow_symlinks`` is set.

    Raises:
        UserError: ``path`` is a directory, a device, a pipe or a socket; a symbolic link
            without ``follow_symlinks``; or its folder cannot be created or written.
    """
    named = _named(path, option)
    target = Path(path)
    if target.is_symlink():
        if not follow_symlinks:
            raise UserError(f"{named}: is a symbolic link (to {os.readlink(target)}); writing it would replace "
                            "the link with a regular file. Give the link's target instead, or pass "
                            "--follow-symlinks to write the target and keep the link.")
        target = Path(os.path.realpath(target))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:  # NotADirectoryError, a link loop, permissions on a parent
        raise UserError(f"{named}: cannot be written ({e.strerror or e}); give another path.") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UserError(f"{named}: is a folder; give the path of a file (one inside it, for example).")
    if mode is not None and not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise UserError(f"{named}: is {kind}, not a regular file; rewriter replaces its outputs with a new "
                        "file, so give the path of a regular file or of a new one.")
    _check_folder_writable(target, named)
    return target


def _check_folder_writable(target: Path, named: str) -> None:
    """The nearest existing folder above ``target`` must be a folder we may create files in."""
    folder = target.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"{named}: {folder} is a file, not a folder; give a path in an existing folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{named}: cannot create files in {folder} (no write permission); "
                        "choose another folder or change its permissions.")


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def check_outputs(outputs: Mapping[str, str | os.PathLike[str] | None],
                  inputs: Mapping[str, str | os.PathLike[str] | None] | None = None,
                  follow_symlinks: bool = False) -> dict[str, Path]:
    """Check every output of a command before it does any work.

    Args:
        outputs: option name (``-o``, ``--report``) -> the path given; None entries are skipped.
        inputs: what the command reads (a description such as "the input model" -> its path);
            no output may be one of them.
        follow_symlinks: as in ``check_output_path``.

    Returns:
        Option name -> the path to write, for every output given.

    Raises:
        UserError: an output ``check_output_path`` refuses, an output that is an input,
            or two outputs that are the same file.
    """
    checked: dict[str, Path] = {}
    for option, path in outputs.items():
        if path is None or os.fspath(path) == "":
            continue
        target = check_output_path(path, option, follow_symlinks)
        for what, source in (inputs or {}).items():
            if source is not None and _same_file(target, Path(source)):
                raise UserError(f"{_named(path, option)}: is {what}; refusing to overwrite it, "
                                f"give {option or 'the output'} another path.")
        for other, earlier in checked.items():
            if _same_file(target, earlier):
                raise UserError(f"{_named(path, option)}: is the same file as {other}; "
                                f"give {option} another path.")
        checked[option] = target
    return checked


_TEMP_SUFFIX = re.compile(r"\.(\d+)\.[0-9a-f]{12}\.tmp")


def _temp_name(dest: Path) -> Path:
    # Hidden, unique, and in the same folder so os.replace stays a same-filesystem rename. The process id
    # tells a later run whether the writer is still alive (remove_stale_temporaries).
    return dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


def _process_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, owned by another user
        return False
    return False


def remove_stale_temporaries(dest: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files of writes to ``dest`` whose process no longer exists.

    A writer killed with SIGKILL leaves its ``.<name>.<pid>.<random>.tmp`` behind; one whose
    process is still running (a concurrent writer) is left alone.

    Returns:
        The files removed.
    """
    target = Path(dest)
    prefix = f".{target.name}"
    removed = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    for name in names:
        if not name.startswith(prefix):
            continue
        match = _TEMP_SUFFIX.fullmatch(name, len(prefix))
        if match is None or not _process_gone(int(match.group(1))):
            continue
        with contextlib.suppress(FileNotFoundError):  # another run removed it first
            os.unlink(target.parent / name)
            removed.append(target.parent / name)
    return removed


def write_temporary(path: str | os.PathLike[str], write: Callable[[BinaryIO], object],
                    what: str = "the file") -> Path:
    """Write a complete, synced new file beside ``path`` under a temporary name, for the caller to rename.

    Stale temporaries of ``path`` (``remove_stale_temporaries``) are removed first. On any failure
    the temporary file is deleted. Missing parent folders are created.

    Returns:
        The temporary file.

    Raises:
        UserError: the file cannot be written (permissions, full disk, ...).
    """
    dest = Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(dest)
        tmp = _temp_name(dest)
        # 0o666 lets the umask decide the final mode.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise UserError(f"{dest}: cannot write {what} ({e.strerror or e}).") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise UserError(f"{dest}: cannot write {what} ({e.strerror or e}).") from None
        raise
    return tmp


def rename_into_place(tmp: Path, dest: str | os.PathLike[str], what: str = "the file") -> None:
    """``os.replace(tmp, dest)``; on failure ``tmp`` is deleted and a UserError raised."""
    try:
        os.replace(tmp, dest)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise UserError(f"{dest}: cannot write {what} ({e.strerror or e}).") from None
        raise


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object], what: str = "the file") -> None:
    """Write a new file beside ``path`` with ``write``, then rename it over ``path``.

    A crash or a full disk never leaves a half-written ``path``: either the old
    file or the complete new one is there. The new file's mode follows the
    umask, as a plain ``open()`` would give it. Missing parent folders are created.

    Args:
        path: the destination: a regular file or a new path (``check_output_path``).
        write: writes the content to the binary file object it is given.
        what: how to name the file in an error message ("the model", "the report").

    Raises:
        UserError: ``path`` is not a regular file or a new path, or the file cannot be
            written (permissions, full disk, ...).
    """
    dest = check_output_path(path)
    rename_into_place(write_temporary(dest, write, what), dest, what)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``flock`` on the folder itself, no lock file).

    Writers that replace several files together take it around their renames and clean-up, so
    two runs writing the same output never interleave them. On leaving, the folder is synced so
    the renames reach the disk in the order they were made. Where ``flock`` does not exist
    (Windows) it does nothing.
    """
    if sys.platform == "win32":  # no flock, and a folder cannot be opened
        yield
        return
    import fcntl  # POSIX only

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
        with contextlib.suppress(OSError):  # some filesystems cannot sync a folder
            os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, what: str = "the file") -> None:
    """``atomic_write`` of ``data``."""
    atomic_write(path, lambda handle: handle.write(data), what)


def atomic_write_text(path: str | os.PathLike[str], text: str, what: str = "the file") -> None:
    """``atomic_write`` of ``text`` as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"), what)
