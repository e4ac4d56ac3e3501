"""The pytest plugin (`-p sage_testing.plugin`): session fixtures built on the development harness
(`sage_harness`), and the rule that with CI=true a missing prerequisite fails the run instead of
skipping."""
