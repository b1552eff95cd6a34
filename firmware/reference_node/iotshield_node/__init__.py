"""IoTShield reference node: a Python implementation of firmware/PROTOCOL.md for tests and demos."""

FIRMWARE_VERSION = "1.1.0"
