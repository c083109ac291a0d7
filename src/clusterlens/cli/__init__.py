"""The ``clusterlens`` command-line tool: thin commands over the library."""
