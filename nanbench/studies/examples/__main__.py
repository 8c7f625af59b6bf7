"""`python -m nanbench.studies.examples` (`make examples`): the documents' examples and claims."""
import sys

from nanbench.studies.examples.cli import main

sys.exit(main())
