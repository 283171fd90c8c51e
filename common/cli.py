"""What every command line of the toolkit shares."""
import argparse


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one `error: ...` line (no usage dump) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")
