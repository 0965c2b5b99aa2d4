"""Drive libgit2 (through pygit2) against a gate, for the clienttest package.

usage: pygit2_client.py CLONE_URL OPEN_PUSH_URL MAINT_PUSH_URL WORKDIR [PUBKEY PRIVKEY]

Clones CLONE_URL into WORKDIR, commits and pushes main to OPEN_PUSH_URL
(must succeed), commits again and pushes to MAINT_PUSH_URL (must fail).
URLs carry HTTP credentials in their user part; with PUBKEY and PRIVKEY
the SSH key pair is used. Prints one line per step: "ok <step>" or
"error <step>: <what pygit2 reported>", and exits 0 when both pushes went
as expected.
"""
import sys
import urllib.parse

import pygit2


class Callbacks(pygit2.RemoteCallbacks):
    def __init__(self, url, pub, priv):
        super().__init__()
        self.url, self.pub, self.priv = url, pub, priv
        self.rejected = []

    def credentials(self, url, username_from_url, allowed_types):
        if allowed_types & pygit2.credentials.GIT_CREDENTIAL_SSH_KEY and self.priv:
            return pygit2.Keypair(username_from_url or "git", self.pub, self.priv, "")
        u = urllib.parse.urlsplit(self.url)
        return pygit2.UserPass(urllib.parse.unquote(u.username or ""), urllib.parse.unquote(u.password or ""))

    def certificate_check(self, certificate, valid, host):
        return True  # a test gate's host key, on 127.0.0.1

    def push_update_reference(self, refname, message):
        if message:
            self.rejected.append("%s: %s" % (refname, message))


def commit(repo, text):
    path = repo.workdir + "/file.txt"
    with open(path, "a") as f:
        f.write(text + "\n")
    repo.index.add("file.txt")
    repo.index.write()
    tree = repo.index.write_tree()
    sig = pygit2.Signature("Test Author", "author@example.com")
    repo.create_commit("HEAD", sig, sig, text, tree, [repo.head.target])


def push(repo, url, pub, priv):
    cb = Callbacks(url, pub, priv)
    name = "gate%d" % len(list(repo.remotes))
    remote = repo.remotes.create(name, url)
    remote.push(["refs/heads/main:refs/heads/main"], callbacks=cb)
    if cb.rejected:
        raise RuntimeError("rejected " + "; ".join(cb.rejected))


def oneline(e):
    return " | ".join(str(e).splitlines())


def main():
    clone_url, open_url, maint_url, work = sys.argv[1:5]
    pub, priv = (sys.argv[5], sys.argv[6]) if len(sys.argv) > 6 else (None, None)
    try:
        repo = pygit2.clone_repository(clone_url, work, callbacks=Callbacks(clone_url, pub, priv))
        print("ok clone")
    except Exception as e:  # what an application shows its user
        print("error clone: %s" % oneline(e))
        return 1
    commit(repo, "while open")
    try:
        push(repo, open_url, pub, priv)
        print("ok push-open")
    except Exception as e:
        print("error push-open: %s" % oneline(e))
        return 1
    commit(repo, "during maintenance")
    try:
        push(repo, maint_url, pub, priv)
        print("ok push-maintenance")
        return 1
    except Exception as e:
        print("error push-maintenance: %s" % oneline(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
