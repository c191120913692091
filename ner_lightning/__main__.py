"""`python -m ner_lightning fit|validate|test|predict --config ...` (see ner_lightning/cli.py)."""

import sys

from ner_lightning.cli import main

if __name__ == "__main__":
    sys.exit(main())
