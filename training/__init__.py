"""Training code of the embedded demo model (never imported by the app at run time)."""
