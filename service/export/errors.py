"""The one error type export raises: its message is a complete, one-line explanation for the user."""


class ExportError(Exception):
    """Export cannot proceed; str(error) says why in one line."""
