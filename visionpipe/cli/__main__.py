import sys

from visionpipe.cli.main import main

sys.exit(main())
