"""``python -m bartsmiles.cli``: the ``bartsmiles`` command."""
import sys

from bartsmiles.cli.main import main

sys.exit(main())
