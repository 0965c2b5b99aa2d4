// Package geoe2e holds the end-to-end tests of Geo replication: one primary
// and two secondary gates (the real gitgate binary, each with its own data
// dir), driven by the real git, ssh and HTTP on 127.0.0.1. It has no code of
// its own; the tests live in their own package so that they run beside the
// other slow packages.
package geoe2e
