"""Getting images in: the pipeline, presigned uploads, the folder watcher, the virus scan and
drift repair."""
