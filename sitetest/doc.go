// Package sitetest holds the end-to-end tests of a site of several gates
// sharing their state in PostgreSQL: the real gitgate binary (three gates
// on one database and one repository directory), real git, ssh and HTTP on
// 127.0.0.1, and a throwaway PostgreSQL cluster (internal/pgtest). It has
// no code of its own; it is a package so that its slow tests run beside the
// others.
package sitetest
