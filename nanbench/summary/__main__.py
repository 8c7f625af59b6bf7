"""`python -m nanbench.summary --sweep NAME`: re-summarize a sweep from its MLflow experiment."""
import sys

from nanbench.summary.cli import main

sys.exit(main())
