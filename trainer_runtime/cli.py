"""The console script's public path, ``trainer_runtime.cli:main`` (pipelines and images name it);
the command itself is ``trainer_runtime.commands.cli``."""
import sys

from trainer_runtime.commands.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
