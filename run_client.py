"""Start the EncTalk client: ``python run_client.py --help``."""

import sys

from enctalk.cli import main

if __name__ == "__main__":
    sys.exit(main())
