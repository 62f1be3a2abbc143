"""The composition root: the `keel` command and the all-in-one launcher (arrive later)."""
