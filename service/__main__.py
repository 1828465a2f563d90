"""`python -m service` is the `squeezeserve` command."""

import sys

from service.cli import main

sys.exit(main())
