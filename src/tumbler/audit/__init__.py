"""tumbler sniff: reads captures and reports the knocks in them."""
