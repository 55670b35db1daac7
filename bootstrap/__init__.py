"""The bootstrap Pulumi program (run from this directory); a package so tests can import its modules."""
