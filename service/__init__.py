"""Latch: passwordless email login (a code and a magic link, a JWT in an HttpOnly cookie)."""
