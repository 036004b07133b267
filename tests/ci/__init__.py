"""Tests of the repository's CI, installers and scripts (.ci/run, scripts/, .github/workflows)."""
