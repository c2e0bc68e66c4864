"""Settings: flags and environment -> frozen, typed objects, read once at the entry point.

Pure: validates and masks secrets, connects to nothing. Imports only the core.
"""
