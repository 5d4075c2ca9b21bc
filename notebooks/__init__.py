"""The kit's notebooks, shipped inside the package (r3kit.notebooks) so `r3kit reproduce` runs after a plain pip install."""
