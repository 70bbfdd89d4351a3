"""The command line, ``homeward …``: the top layer, over the service, the tools and the parts."""
