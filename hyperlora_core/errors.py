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
    "missing", "empty", "lfs_pointer", "web_page", "truncated" or "invalid"."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
