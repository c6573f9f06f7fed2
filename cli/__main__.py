"""`python -m cli` and the `aitrainer` console script."""

from cli.app import main

if __name__ == "__main__":
    main()
