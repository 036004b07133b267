"""Tests of docs/: examples and guides executed as a reader copies them."""
