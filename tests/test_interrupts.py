"""A Ctrl-C that Python swallows (it landed in a finaliser) still stops the build before it
sends anything (nbpipe/interrupts.py). Found by the money model: a ^C during planning was
printed as "Exception ignored ... KeyboardInterrupt" and the build went on to send."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, signal
    from nbpipe import interrupts

    interrupts.install()

    class Finaliser:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10000):  # the handler runs in here: Python ignores what it raises
                pass

    Finaliser()
    print("planning went on")
    try:
        interrupts.take_over()
    except KeyboardInterrupt:
        print("stopped before sending")
    print("asyncio may take SIGINT:", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
""")


def test_a_press_swallowed_by_a_finaliser_stops_the_build_before_it_sends():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert "Exception ignored" in done.stderr and "KeyboardInterrupt" in done.stderr
    assert done.stdout.splitlines() == ["planning went on", "stopped before sending",
                                        "asyncio may take SIGINT: True"]


def test_without_a_press_the_build_goes_on_and_asyncio_takes_sigint():
    script = SCRIPT.replace("\nFinaliser()\n", "\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.splitlines() == ["planning went on", "asyncio may take SIGINT: True"]
