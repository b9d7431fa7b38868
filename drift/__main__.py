import sys

from drift.monitor import main

sys.exit(main())
