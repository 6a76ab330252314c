"""The one exception type the project raises for user mistakes."""


class PowerBertError(ValueError):
    """A bad flag, file, row or value; the message is one line naming it.

    Command-line drivers print the message alone and exit non-zero; library users
    can catch it like any ``ValueError``.
    """
