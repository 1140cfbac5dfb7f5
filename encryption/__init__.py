"""Payload encryption: personal and financial data in Temporal payloads is AES-GCM encrypted."""
