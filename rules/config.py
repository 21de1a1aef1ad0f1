"""Errors for bad input: they name the field and the fix, and are raised before any API call."""


class ConfigError(ValueError):
    """A parameter, block or config file is wrong; the message says which and how to fix it."""
