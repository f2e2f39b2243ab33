#!/usr/bin/env python3
"""collab's command line; see `python run_pipeline.py --help`."""
import sys

from collab.cli import main

if __name__ == "__main__":
    sys.exit(main())
