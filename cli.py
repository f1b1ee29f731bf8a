"""Run the dip command from a checkout without installing it: ``python cli.py restore photo.png``."""

from dip.cli import main

if __name__ == "__main__":
    main()
