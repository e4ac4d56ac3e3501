"""The `sage` command line: one tool for engines, fine-tunes and local mode (`sage up`)."""
