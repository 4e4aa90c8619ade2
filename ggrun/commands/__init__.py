"""Subcommands that live in their own modules (see cli.COMMAND_MODULES)."""
