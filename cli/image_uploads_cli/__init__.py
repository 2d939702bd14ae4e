"""`image-uploads`: bulk-upload a folder of images into a dataset through the image-uploads API."""
