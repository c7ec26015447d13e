"""``python -m console.demo`` (``make run``)."""

import sys

from console.demo.run import main

sys.exit(main())
