"""The machine and the process: the --out lock, interrupts, several processes,
progress lines, the environment record."""
