"""The one exception type for mistakes in what the user asked for."""


class TransferkitError(ValueError):
    """A user mistake (bad path, spec, name or number), said in one line.

    The message names what is wrong and what to do about it. The command line
    prints it without a traceback and exits with status 2; library callers can
    catch it as a `ValueError`.
    """
