"""One module per ``aiodock`` command; each exposes ``COMMAND`` (an ``aiodock.cli.base.Command``)."""
