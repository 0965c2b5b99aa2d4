// Package lfse2e holds the end-to-end tests of Git LFS through the gate:
// the real gitgate binary, the real git and git-lfs clients, HTTP and SSH
// on 127.0.0.1. They live in their own package so that they run beside the
// other slow packages.
package lfse2e
