"""``python -m flowdeck``: the same as the ``flowdeck`` command."""

from flowdeck.cli import main

main()
