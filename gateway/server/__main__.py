"""`python -m gateway.server`: the gateway process (what `moltbot gateway start` runs)."""

import sys

from gateway.server.main import main

sys.exit(main())
