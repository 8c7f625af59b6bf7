"""`python -m nanbench.studies.diagnose`, the same as `python -m nanbench.diagnose`."""
import sys

from nanbench.studies.diagnose.cli import main

sys.exit(main())
