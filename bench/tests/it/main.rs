//! The benchmark harness's integration tests, one binary: each harness runs end to end on
//! a small workload and writes a complete report (they assert nothing about speed).

mod aggregate_smoke;
