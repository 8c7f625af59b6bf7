"""`python -m nanbench.studies.boundary` (`make boundaries`): largest stable learning rates."""
import sys

from nanbench.studies.boundary.cli import main

sys.exit(main())
