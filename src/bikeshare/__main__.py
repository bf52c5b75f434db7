"""``python -m bikeshare``: the same command line as the ``bikeshare`` script."""

from bikeshare.cli import app

if __name__ == "__main__":
    app()
