"""The errors a user can fix: every entry point prints their message on one line, without a
traceback (see :func:`seq2seq.cli.console.run_main`)."""


class UserError(Exception):
    """Bad input (config, data, checkpoint, command line): the message says what and where."""


class ConfigError(UserError):
    """A config key or value that is not valid."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
