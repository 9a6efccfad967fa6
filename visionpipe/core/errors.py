"""The two errors a user can fix from the message alone (the CLI prints one line, exit 2)."""


class UserError(Exception):
    """An error whose message is all the user needs (no traceback)."""


class ConfigError(ValueError):
    """A configuration problem; the message names the key."""
