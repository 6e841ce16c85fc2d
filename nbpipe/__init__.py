"""nbpipe: make for images. Render only the frames whose request changed; never pay twice."""

__version__ = "0.1.0"
