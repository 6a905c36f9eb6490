"""Errors a user can cause. Tools print them as one line and exit with status 2."""


class UserError(ValueError):
    """Something the user can fix: the message names the problem and what to do."""
