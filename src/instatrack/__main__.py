"""``python -m instatrack ...``: the ``instatrack`` command, where the script is not on
the PATH (a virtual environment not activated, a notebook's ``!python -m``)."""

import sys

from instatrack.cli import main

sys.exit(main())
