"""Exceptions raised for bad input."""


class InputError(ValueError):
    """Bad input from the user: the message names the problem."""


class AdaptorMismatchError(InputError):
    """An adaptor does not fit the vectors, model or collection it is used with."""
