"""The domain types every part shares: contracts, errors, clock, confidence, the OpenAI wire
format. Imports nothing else of the project.
"""
