import sys

from tinyasc.cli import main

sys.exit(main())
