"""`python -m tumbler`: the `tumbler` client, for hosts where the script is not on PATH."""

import sys

from tumbler.cli.tumbler import main

sys.exit(main())
