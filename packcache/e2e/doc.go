// Package e2e tests the pack-objects cache end to end: the real gitgate
// binary, the real git client over smart HTTP and OpenSSH, real git
// pack-objects behind the hook. It is a package of its own so that its
// tests run beside the other packages' under "go test ./...".
package e2e
