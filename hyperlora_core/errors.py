"""The one exception type users see.

Every problem a user can fix (a missing file, a wrong folder layout, a photo without a face) is
raised as :class:`HyperLoRAError` with a message that says what was found, what was expected and
what to do, so ComfyUI shows a sentence instead of a traceback from deep inside torch.
"""

from __future__ import annotations


class HyperLoRAError(Exception):
    """A problem with the user's input, files or setup, explained in the message."""


class DamagedFileError(HyperLoRAError):
    """A model file that is there but unusable. `kind` says why, for reports that group problems:
    "missing", "empty", "lfs_pointer", "web_page", "truncated", "invalid" or "unreadable" (permissions)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def os_error_message(path: object, exc: OSError, action: str = "read") -> str:
    """What an OSError on `path` means and what to do, instead of a bare `[Errno 13] ...`.

    Each cause gets its own advice: an unreadable file is not a damaged one, so the fix is the
    file's permissions, never downloading it again.
    """
    import errno

    code = exc.errno
    if isinstance(exc, PermissionError) or code in (errno.EACCES, errno.EPERM):
        return (f"{path}: permission denied; the user running ComfyUI may not {action} it. Fix the owner or the "
                f"permissions of the file and its folder (e.g. chmod a+r for reading, u+w on the folder for writing).")
    if code == errno.ENOSPC or code == getattr(errno, "EDQUOT", -1):
        return (f"disk full writing {path}: the disk is full (or over quota); nothing was written there and the "
                "partial file was removed. Free space on that disk (or choose a folder on another one) and run again.")
    if code == errno.EROFS:
        return f"{path}: the folder is on a read-only file system; nothing was written. Choose a writable folder."
    if code == errno.ENAMETOOLONG:
        return f"{path}: the name is too long for the file system; choose a shorter name."
    if code in (errno.ENOTDIR, errno.EEXIST) and action == "write":
        return f"{path}: a part of this path is a file, not a folder; choose another sub-folder name."
    if code == errno.ENOENT:
        return f"{path}: no such file or folder."
    if code == errno.ELOOP:
        return f"{path}: too many levels of symbolic links (a link points at itself); fix or remove the link."
    return f"{path}: could not {action} it ({exc.strerror or exc})."
