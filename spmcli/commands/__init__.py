"""One module per subcommand; each defines a Click ``command``."""
