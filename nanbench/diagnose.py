"""`python -m nanbench.diagnose [hydra overrides]`: why a configuration goes NaN and the smallest
change with which it trains (nanbench.studies.diagnose; README "Diagnose")."""
import sys

from nanbench.studies.diagnose.cli import main

if __name__ == "__main__":
    sys.exit(main())
