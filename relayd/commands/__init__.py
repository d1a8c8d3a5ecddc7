"""Implementations of the relayd subcommands other than serve."""
