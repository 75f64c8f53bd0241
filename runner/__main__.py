"""``python -m runner``: the same CLI as the ``runner`` console script."""

from runner.cli.main import main

main()
