"""``python -m study.cli``: the console script ``zoneout-study``."""

from study.cli import main

if __name__ == "__main__":
    main()
