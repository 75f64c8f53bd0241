"""The command line: thin click layers over runner.api (one module per subcommand)."""
