try:
    from nbpipe.launch import entry
except KeyboardInterrupt:  # Ctrl-C while Python is still importing: nothing ran yet
    raise SystemExit(130) from None

entry()
