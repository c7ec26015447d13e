"""``python -m producers.demo`` (``make run``)."""

import sys

from producers.demo.run import main

sys.exit(main())
