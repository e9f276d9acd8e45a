"""The security core: security profiles, credentials, CA store and certificate checks.

Independent of `gateway`: it decides from the facts of a connection; the gateway acts on verdicts.
"""
