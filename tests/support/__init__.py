"""Code the test packages and the benchmarks share to build their worlds (``support.worlds``)."""
