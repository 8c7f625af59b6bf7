"""`python -m nanbench.diagnose [hydra overrides]`: why a configuration goes NaN and the smallest
change that makes it stable (nanbench.studies.diagnose; README "Diagnose")."""
import sys

from nanbench.studies.diagnose.cli import main

if __name__ == "__main__":
    sys.exit(main())
