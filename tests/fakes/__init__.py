"""Loopback stand-ins for the commercial providers' HTTP APIs, driven through the official SDKs."""
