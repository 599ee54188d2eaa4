"""The ``mito`` command line: one module per role, no business logic."""
