"""Run the EncTalk server, or its admin commands: ``python run_server.py --help``."""

import sys

from server.main import main

if __name__ == "__main__":
    sys.exit(main())
