import sys

from routed.cli.main import main

sys.exit(main())
