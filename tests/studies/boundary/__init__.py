"""Tests of nanbench.studies.boundary (a package, so that its conftest.py does not take the name of tests/conftest.py)."""
