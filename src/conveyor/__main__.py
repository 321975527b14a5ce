"""`python -m conveyor`: the same command line as `conveyor`."""

from .cli import main

if __name__ == "__main__":
    main()
