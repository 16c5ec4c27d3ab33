"""The `wok` command: the embedded stack and the tools around it."""
