"""Output safety: nothing a command writes may destroy data (issue 12).

Every file the program writes goes through one :class:`OutputTarget`:

1. :meth:`OutputTarget.prepare`, **before any computation**: the path is not one of the command's
   inputs (same inode or same resolved path), not a directory or another non-regular file; its
   folder (or the nearest existing parent, which the write creates below) is a directory in
   which a file can be created (a probe file is made and removed, so read-only file systems and
   missing permissions are found, also as root); a rough size estimate fits in the free space;
   and an existing file there was written by this program and is of the same kind — anything
   else is refused unless ``overwrite`` is set.
2. :meth:`OutputTarget.write`: the writer callback writes a temporary file next to the target
   (through its own atomic write), the root attributes ``software``, ``version``, ``kind`` and
   ``warnings_json`` are stamped on it, and only then is it renamed onto the target.  A failing
   writer leaves neither the target changed nor a temporary file behind.

Every :class:`OSError` on the way becomes an :class:`OutputError` with one line naming the path
and the reason (read-only file system, a directory, disk full, …).

File kinds (root attribute ``kind``): ``stem`` (4D-STEM data, ``caviar simulate``), ``recon``,
``atoms``, ``corr``, ``disp``, ``diag`` (conventions §6).  Files written by earlier versions carry
no ``kind``; :func:`existing_kind` recognises them by their content.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py

from caviar_napari import __version__
from caviar_napari.errors import CaviarError
from caviar_napari.io._h5util import SOFTWARE, as_text
from caviar_napari.io.atomic import atomic_path

__all__ = [
    "OUTPUT_KINDS",
    "OutputError",
    "OutputTarget",
    "check_location",
    "describe_os_error",
    "existing_kind",
    "os_error_message",
    "read_warnings",
]

#: The kinds of file the program writes (root attribute ``kind``) and their names in messages.
OUTPUT_KINDS: dict[str, str] = {
    "stem": "4D-STEM dataset",
    "recon": "reconstruction",
    "atoms": "ATOMS file",
    "corr": "CORR file",
    "disp": "DISP file",
    "diag": "DIAG file",
}

#: ``format`` attribute of reconstruction files (``io.reconstruction.FORMAT``; checkpoints and
#: files of earlier versions are recognised by it).
_RECON_FORMAT = "caviar-reconstruction"

#: Short reasons of the OSErrors a write meets.
_REASONS: dict[int, str] = {
    errno.EROFS: "read-only file system",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "a parent of it is not a directory",
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or directory",
    errno.ENAMETOOLONG: "file name too long",
    errno.EXDEV: "cannot rename across file systems",
}


class OutputError(CaviarError):
    """An output file cannot, or must not, be written; the message names it and says why."""


def describe_os_error(exc: OSError) -> str:
    """A short reason for ``exc`` (e.g. ``"read-only file system"``).

    h5py often reports a failed system call inside its message (``errno = 28``) without setting
    :attr:`OSError.errno`; that number is used too.
    """
    code = exc.errno
    if code is None:
        found = re.search(r"errno\s*=\s*(\d+)", str(exc))
        code = int(found.group(1)) if found else None
    if code in _REASONS:
        return _REASONS[code]
    return exc.strerror or str(exc) or type(exc).__name__


def os_error_message(path: str | os.PathLike | None, exc: OSError) -> str:
    """One line ``"<path>: <reason>"`` for an OSError met while handling ``path``."""
    where = path if path is not None else (exc.filename or "")
    reason = describe_os_error(exc)
    return f"{where}: {reason}" if where else reason


def existing_kind(path: str | os.PathLike) -> str | None:
    """The kind of an existing file written by this program, or None for any other file.

    Files with the root attributes ``software = "caviar-napari"`` and a known ``kind`` are
    recognised by them; files of earlier versions by their content (a reconstruction's
    ``format`` attribute, a simulation's ``ground_truth`` group, the ``software`` stamp of
    ATOMS, CORR and DISP files).
    """
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError):
        return None
    with f:
        attrs = f.attrs
        software = as_text(attrs.get("software", ""))
        kind = as_text(attrs.get("kind", ""))
        if software == SOFTWARE and kind in OUTPUT_KINDS:
            return kind
        if as_text(attrs.get("format", "")) == _RECON_FORMAT:
            return "recon"
        truth = f.get("ground_truth")
        if (
            isinstance(truth, h5py.Group)
            and "intensities" in f
            and "caviar_napari_version" in truth.attrs
        ):
            return "stem"
        if software == SOFTWARE:
            if "positions_A" in f and "mean_positions_A" in f:
                return "atoms"
            if "green_A2" in f:
                return "corr"
            if "frequencies_THz" in f:
                return "disp"
    return None


def read_warnings(path: str | os.PathLike) -> list[str]:
    """The warnings recorded in an output file (root attribute ``warnings_json``; [] if none)."""
    with h5py.File(path, "r") as f:
        text = as_text(f.attrs.get("warnings_json", "[]"))
    values = json.loads(text)
    return [str(v) for v in values] if isinstance(values, list) else []


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are the same file (same inode) or the same resolved path."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest existing parent (the write creates the missing ones)."""
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _a(name: str) -> str:
    """``name`` with its indefinite article."""
    return f"{'an' if name[:1] in 'AEIOUaeiou' else 'a'} {name}"


def _human(n_bytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TiB"  # pragma: no cover


def check_location(path: str | os.PathLike, *, option: str = "--out") -> None:
    """Check that a file can be created at ``path`` (any kind of file, text included).

    ``path`` is not a directory or another non-regular file, and its folder (or the nearest
    existing parent) is a directory in which a probe file can be made and removed.

    Raises
    ------
    OutputError
        Naming the path and the reason.
    """
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{p}: is a directory ({option} must name a file)")
    if p.exists() and not p.is_file():
        raise OutputError(f"{p}: exists and is not a regular file; refusing to replace it")
    folder = _nearest_existing(p.parent)
    if not folder.is_dir():
        raise OutputError(f"{p}: cannot write there: {folder} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".caviar-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{p}: cannot write in {folder} ({describe_os_error(exc)})") from None


@dataclass(frozen=True)
class OutputTarget:
    """A checked output file of one kind (see the module docstring).

    Attributes
    ----------
    path
        The file to write.
    kind
        One of :data:`OUTPUT_KINDS`.
    overwrite
        Replace an existing file that this program did not write, or of another kind.
    option
        How the command names the path in messages (``--out``, ``checkpoint``).
    """

    path: Path
    kind: str
    overwrite: bool = False
    option: str = "--out"

    @classmethod
    def prepare(
        cls,
        path: str | os.PathLike,
        kind: str,
        *,
        inputs: Mapping[str, str | os.PathLike | None] | None = None,
        overwrite: bool = False,
        size_bytes: float = 0.0,
        option: str = "--out",
    ) -> OutputTarget:
        """Check, before any computation, that ``path`` may and can be written.

        Parameters
        ----------
        path
            The output file.
        kind
            Its kind (:data:`OUTPUT_KINDS`).
        inputs
            The command's inputs by how the command names them (``{"DATA": …, "--config":
            …}``); None values are skipped.  The output may be none of them.
        overwrite
            Allow replacing a file that this program did not write or of another kind.
        size_bytes
            Rough size of the output; refused when the file system has less free space.
        option
            Name of the path in messages.

        Raises
        ------
        OutputError
            Naming the path and the reason.
        """
        if kind not in OUTPUT_KINDS:
            raise ValueError(f"unknown output kind {kind!r}; known: {sorted(OUTPUT_KINDS)}")
        target = cls(Path(path), kind, bool(overwrite), option)
        target._check_not_input(inputs or {})
        target._check_location(size_bytes)
        target._check_replaceable()
        return target

    def _check_not_input(self, inputs: Mapping[str, str | os.PathLike | None]) -> None:
        for name, value in inputs.items():
            if value is None or str(value) == "":
                continue
            if _same_file(self.path, Path(value)):
                raise OutputError(
                    f"{self.path}: {self.option} is the {name} input of the same command; "
                    f"refusing to replace an input (choose another {self.option})"
                )

    def _check_location(self, size_bytes: float) -> None:
        check_location(self.path, option=self.option)
        self.require_space(size_bytes)

    def require_space(self, size_bytes: float) -> None:
        """Refuse (OutputError) when the file system has less than ``size_bytes`` free.

        For outputs whose size is known only once the inputs are read (still before computing).
        """
        if size_bytes <= 0:
            return
        folder = _nearest_existing(self.path.parent)
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return
        if free < size_bytes:
            raise OutputError(
                f"{self.path}: not enough free space in {folder} (the output needs about "
                f"{_human(size_bytes)}, {_human(free)} free)"
            )

    def _check_replaceable(self) -> None:
        p = self.path
        if not p.exists() or self.overwrite:
            return
        have = existing_kind(p)
        if have is None:
            raise OutputError(
                f"{p}: exists and was not written by caviar-napari; refusing to replace it "
                "(give --overwrite to replace it)"
            )
        if have != self.kind:
            raise OutputError(
                f"{p}: exists and is {_a(OUTPUT_KINDS[have])}, not {_a(OUTPUT_KINDS[self.kind])}; "
                "refusing to replace it (give --overwrite to replace it)"
            )

    def write(self, writer: Callable[[Path], None], *, warnings: Sequence[str] = ()) -> Path:
        """Write the file atomically through ``writer(temporary_path)`` and stamp it.

        Parameters
        ----------
        writer
            Writes the complete HDF5 file at the path it is given (e.g.
            ``lambda p: write_atoms(p, data)``).
        warnings
            Recorded as the root attribute ``warnings_json`` (a JSON list of text).

        Returns
        -------
        Path
            The written file.

        Raises
        ------
        OutputError
            An OSError while writing (named path and reason), or the target changed since
            :meth:`prepare` into a file that may not be replaced.
        """
        self._check_replaceable()  # a file may have appeared since prepare()
        try:
            with atomic_path(self.path) as tmp:
                writer(tmp)
                with h5py.File(tmp, "r+") as f:
                    f.attrs["software"] = SOFTWARE
                    f.attrs["version"] = __version__
                    f.attrs["kind"] = self.kind
                    f.attrs["warnings_json"] = json.dumps([str(w) for w in warnings])
        except OSError as exc:
            raise OutputError(os_error_message(self.path, exc)) from None
        return self.path
