"""Templates of `wok new service NAME` (data files; see wok_cli.commands.new)."""
