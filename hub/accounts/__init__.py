"""People and credentials: clinics, accounts, passwords, TOTP, sessions, login throttling, API tokens."""
