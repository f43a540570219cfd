"""tumbler: port knocking and single-packet authorization (the Tumbler protocol)."""

__version__ = "0.1.0"
