"""Durable state of the hub."""
