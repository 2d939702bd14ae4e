"""ApiFunction: the HTTP API of the image-upload backend."""
