"""nbpipe: make for images. Render only the frames whose request changed; never pay twice."""
