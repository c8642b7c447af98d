"""Synthetic households, a simulated meter photographed by a virtual camera, and the demo."""
