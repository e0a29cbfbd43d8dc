"""mfrec.serve: turns HTTP requests (real-time endpoints, batch transform) into recommendations."""
