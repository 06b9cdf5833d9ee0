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


def require_packages(what: str, modules, install: str):
    """Import ``modules`` (returns the last), or raise a one-line UserError: ``what`` needs the
    first that is missing, and how to install it (``install``)."""
    mod = None
    for name in modules:
        try:
            mod = __import__(name)
        except ImportError:
            raise UserError(f"{what} needs the {name} package, which is not installed: "
                            f"{install}") from None
    return mod
