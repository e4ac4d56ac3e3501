"""Test support shared by every tier: a real control plane, kubectl, engine processes, and the
rule that with CI=true a missing prerequisite fails the run instead of skipping."""
