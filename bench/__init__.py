"""ssehub's benchmarks: the load generator, the peer servers and the driver (python -m bench)."""
