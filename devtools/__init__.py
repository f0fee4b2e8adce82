"""Development tools (not in the image): generators of the docs' reference tables."""
