"""The watchdog's check and its protection view."""
