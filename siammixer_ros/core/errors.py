"""Error types of the tracking core.

Every error a caller can cause is a :class:`TrackerError`; the subclasses also derive from the
matching built-in exception so that ``except ValueError`` keeps working for code that does not
know this package.
"""

from __future__ import annotations

from siammixer_ros.core.model_file import ModelError

__all__ = [
    "FrameSizeError", "ModelError", "TrackerError", "TrackerInputError", "TrackerParamsError", "TrackerStateError"
]


class TrackerError(Exception):
    """Base class of the tracker's errors."""


class TrackerInputError(TrackerError, ValueError):
    """An image or box given to the tracker is unusable (wrong type, shape, empty, NaN, outside the image)."""


class FrameSizeError(TrackerInputError):
    """A frame of another aspect ratio than the track's: the target's position cannot be carried over to it
    (the tracker is unchanged; set the target again on the new stream)."""


class TrackerStateError(TrackerError, RuntimeError):
    """A call that needs an initialised tracker (``update``) came before ``init``."""


class TrackerParamsError(TrackerError, ValueError):
    """Tracker parameters are unknown, of the wrong type or out of range."""
