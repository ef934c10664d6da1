"""`python -m training`: reproduce the shipped demo model from scratch (same as `python -m training.train`)."""

from training.train import main

main()
