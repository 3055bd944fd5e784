"""Run directories: the directory itself (manifest, log, lock), its rows files, reading one that
may still be written (status and comparison), and archives."""
