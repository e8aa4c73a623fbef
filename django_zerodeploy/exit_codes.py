"""Exit codes shared by every command; documented in each --help and in docs/commands.md."""

OK = 0  # reloaded / deployed / nothing to deploy
FAILED = 1  # refused or failed, rolled back: the previous release still serves
USAGE = 2  # bad usage or configuration
DOWN = 3  # the site may be down and needs a person
LOCKED = 4  # another deploy holds the lock (deploy only)

EPILOG = (
    "Exit codes: 0 done (or nothing to do); 1 refused or failed, the previous release still "
    "serves; 2 bad usage or configuration; 3 the site may be down and needs a person"
)


class CommandFailure(Exception):
    """A failure with a readable message and the exit code the command must return."""

    def __init__(self, message: str, exit_code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
