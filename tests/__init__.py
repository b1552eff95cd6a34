"""Tests for the IoTShield integration."""
