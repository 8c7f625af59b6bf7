"""`python -m nanbench [overrides]`: one training run (or a Hydra multirun with -m)."""

from nanbench.cli import main

if __name__ == "__main__":
    main()
