from nbpipe.cli import entry

entry()
