"""This machine's GPUs, CUDA and memory, and the `rwkv` strategy that fits a model here."""
