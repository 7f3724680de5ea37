"""``python -m threadline.cli``: the ``threadline`` command."""

from threadline.cli import main

main()
