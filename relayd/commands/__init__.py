"""Implementations of `relayd` subcommands other than `serve`."""
