"""The ``pneumo-batch`` command line: one module per command, composed in :mod:`.app`."""
