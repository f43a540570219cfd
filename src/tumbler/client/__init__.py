"""Knocking as a library: single packets, port sequences, ssh ProxyCommand, host profiles."""
