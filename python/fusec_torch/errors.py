"""The error export() and save_weights() raise."""


class ExportError(Exception):
    """A module, function or argument that fusec_torch cannot express in a .fuse spec.

    The message names the fx node and the line of the user's code that created it."""
