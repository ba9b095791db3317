"""Torch-free readers and converters for official GAN checkpoints."""
