"""Errors that the command line turns into one line on stderr and exit code 2.

Everything a *user* can cause (a bad file, a wrong option, a missing extra) raises a
subclass of :class:`XRayDenoiseError` with a message that names the file and the reason.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class XRayDenoiseError(Exception):
    """Base class for user-facing errors (bad input, bad option, missing dependency)."""


class ImageReadError(XRayDenoiseError):
    """An input image cannot be read: missing, truncated, not an image, colour, too large."""


class ImageWriteError(XRayDenoiseError):
    """An output image cannot be written (folder not writable, would overwrite an input...)."""


class WeightsError(XRayDenoiseError):
    """A weights file is missing, corrupt, unsafe (pickle) or of another architecture."""


class MissingDependencyError(XRayDenoiseError):
    """An optional dependency (torch, onnxruntime, bm3d) is needed but not installed."""


class ConfigError(XRayDenoiseError):
    """A configuration file or option is invalid."""
