"""``python -m meshinsights.cli``: same as the ``meshinsights`` script."""

from meshinsights.cli import main

main()
