"""Tests of nanbench.studies.diagnose (a package, so that module names do not clash)."""
