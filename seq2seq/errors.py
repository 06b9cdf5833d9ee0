"""The error a user can fix: the CLI prints its message on one line, without a traceback."""


class UserError(Exception):
    """Bad input (config, data, checkpoint, command line): the message says what and where."""


class ConfigError(UserError):
    """A config key or value that is not valid."""
