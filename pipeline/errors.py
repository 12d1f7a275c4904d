"""The one exception type users see: a message that names the problem and the fix."""


class EdgesmithError(Exception):
    """Bad input or an impossible request. The CLI prints it as one line and exits with status 2."""


def require(condition: bool, message: str) -> None:
    """Raise EdgesmithError(message) unless condition holds (never `assert` on user input)."""
    if not condition:
        raise EdgesmithError(message)
