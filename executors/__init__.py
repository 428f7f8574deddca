"""What the render workers run: photo analysis, find-image and rendering, each settling its outbox row."""
