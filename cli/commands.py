"""The list of commands; each lives in a module of its own."""

ALL = []
