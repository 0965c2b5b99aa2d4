// Package clienttest checks that the Git clients people use work through the
// gate and show its maintenance refusal to their user (issue 12).
//
// Its tests drive the real libraries against a real "gitgate serve",
// over smart HTTP and SSH on 127.0.0.1: git itself, libgit2 (through
// pygit2), dulwich, JGit (with JSch for SSH), go-git and isomorphic-git.
// The small programs that drive them are in testdata/clients at the root
// of the module; the Python ones run on the system's /usr/bin/python3 with
// Debian's python3-pygit2 and python3-dulwich, the Java one is compiled at
// test time against Debian's libjgit-java, go-git is driven in process,
// and isomorphic-git is installed with npm into testdata/clients/.npm
// (ignored by git). A client whose package is missing is skipped with a
// loud message.
//
// Two gates run for the whole package: one open, one in maintenance mode.
// Each client clones from the open gate and pushes to it (which must
// work), then pushes a new commit to the gate in maintenance, which must
// fail before any pack data is sent, with GitLab's message in what the
// library reports, and leave the repository's refs as they were. Each
// client has its own repository on both gates, so the clients run in
// parallel.
//
// The channel that carries the refusal to each client is chosen by
// gitgate.RefusalChannelFor; the README's "Git clients" section has the
// table, with the output these tests saw.
package clienttest
