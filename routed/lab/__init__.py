"""The netns lab runner: containerlab topology files brought up without Docker."""
