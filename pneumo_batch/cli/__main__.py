"""``python -m pneumo_batch.cli``: the same as the ``pneumo-batch`` command."""

from pneumo_batch.cli.app import main

main()
