"""Typed errors raised by the computenet SDK.

Every SDK error derives from `ComputenetError`, so callers can catch the whole
family at once; errors that are also plain value errors keep `ValueError` as a
base so generic handlers still see them.
"""


class ComputenetError(Exception):
    """Base of every error the SDK raises on purpose."""


class ManifestError(ComputenetError, ValueError):
    """A job manifest is malformed; the message starts with the field path, e.g. `manifest.image: ...`."""


class InvalidSignature(ComputenetError):
    """A signature is malformed, malleable (high s, v not 27/28) or recovers no signer."""
