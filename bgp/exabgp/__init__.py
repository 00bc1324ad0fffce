"""The ExaBGP edge: its config, its JSON messages, its commands, and the child process."""
