"""A warm process (NBPIPE_WARM=1): nbpipe's machinery imported once, forked for each command.

A build with anything to do imports pydantic, jinja2, asyncio, click and nbpipe's engine before
it reads a line of the project: about 250 ms, where the no-op fast path starts in about 130.
A server that imported them once and forks a child per command hands each command those
modules for the price of a fork.

The child *is* the command. It takes the caller's argv, working folder, environment, umask and
standard streams (their file descriptors pass over a Unix socket), so it reads the same project,
prints to the same terminal and exits with the code the caller exits with. The caller forwards
Ctrl-C and the other stopping signals to it, and when the caller dies (kill -9) the child kills
itself, so a warm command stops as a cold one would, and its journal keeps what it paid for.

What a fork cannot take from the caller is what was fixed when the server started: the
interpreter and its options, sys.path, nbpipe's own files, the installed packages, the locale.
All of these are in the server's key, the name of its socket (`place.py`): a change starts
another server, and the old one exits when idle (NBPIPE_WARM_IDLE seconds).
"""
