"""What will happen: frames resolved from the manifest, their keys, and the build graph."""

# The frame key schema (the policy is in plan/frame.py). It lives here, not in frame.py, so
# the no-op check (engine/noop.py) can compare it without importing the frame machinery.
KEY_SCHEMA = 1
