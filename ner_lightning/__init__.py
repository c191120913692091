"""ner-lightning: named-entity recognition with PyTorch Lightning.

This package is everything that runs inside a job (data, model, metrics, callbacks, export,
prediction). Importing the package itself is cheap and pulls in no torch: heavy modules are
imported where they are used.
"""

__version__ = "0.1.0"
