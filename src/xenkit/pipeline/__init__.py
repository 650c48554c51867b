"""The build: spec -> artifacts -> images, and edits to a finished build."""
