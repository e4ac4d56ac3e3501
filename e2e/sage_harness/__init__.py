"""The development harness: real things started and stopped for tests, benchmarks and
`make devcluster` (a control plane, engine, gateway and operator processes, kubectl and helm, the
test models). No pytest in here: the test plugin (`sage_testing`) builds its fixtures on top."""
