"""Collections, records and their images: the changes that span catalog, vectors and blobs."""
