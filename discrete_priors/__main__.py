import sys

from discrete_priors.cli import main

if __name__ == "__main__":
    sys.exit(main())
