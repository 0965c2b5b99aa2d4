// Package site measures a site of several gates sharing their state in
// PostgreSQL: how long after a toggle on one gate the other gates refuse
// pushes (p50 and p99). It holds benchmarks only: run them with
// "make bench" (200 toggles).
package site
