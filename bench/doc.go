// Package bench measures the gate against what users would run without it.
// It holds benchmarks only: run them with "make bench".
package bench
