"""Backends do the heavy ops of the forward pass: quantized matmul, attention, embedding."""
