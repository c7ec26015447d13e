"""How often Klaviyo may be called, and when to try again: the shared rate limiter, the
gate every request passes, and the retry timing of records, flushes and polls.
"""
