"""The operator's use cases: users, admin keys, the audit log and webhooks (docs/design.md §14),
and the housekeeping that keeps their tables bounded. No HTTP here: the admin surface and the
command line both call these."""
