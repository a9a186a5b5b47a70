"""The results layer: the store (entries keyed by configuration, written atomically), the
protocols and data catalogue that keys name, the store-backed experiments and their setups, and
the re-derivation of committed results. Imports nothing above it."""
