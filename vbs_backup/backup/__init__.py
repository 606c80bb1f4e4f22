"""Backing up disks: targets, quotas, submit, waiter, reconcile."""
