"""tumblerd: wires sources, decisions and actions together in one asyncio loop."""
