"""Where the daemon sees the world: UDP knocks, NFLOG netlink groups, firewall log files.

Each source turns what it reads into events; none of them decides anything.
"""
