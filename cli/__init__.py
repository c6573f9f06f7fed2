"""`aitrainer`: train a phone-ready image classifier from a local folder with one command."""
