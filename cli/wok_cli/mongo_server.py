"""Runs the nx-27017 MongoDB wire-protocol server with its logging kept free of documents.

nx-27017 logs every database command with its full content at INFO, which would copy
names and e-mail addresses into the log file; only its warnings and errors are kept.
Usage: `python -m wok_cli.mongo_server <nx-27017 arguments>`.
"""

from __future__ import annotations

import logging
import sys


def main() -> None:
    from nx_27017.nx_27017 import main as nx_main

    logging.getLogger("nx_27017").setLevel(logging.WARNING)
    sys.argv[0] = "nx-27017"
    sys.exit(nx_main())


if __name__ == "__main__":
    main()
