"""Drive dulwich against a gate, for the clienttest package.

usage: dulwich_client.py CLONE_URL OPEN_PUSH_URL MAINT_PUSH_URL WORKDIR

Clones CLONE_URL into WORKDIR, commits and pushes main to OPEN_PUSH_URL
(must succeed), commits again and pushes to MAINT_PUSH_URL (must fail).
HTTP URLs carry credentials in their user part; over SSH dulwich runs the
command in GIT_SSH_COMMAND. Prints one line per step: "ok <step>" or
"error <step>: <what dulwich reported>", and exits 0 when both pushes went
as expected.
"""
import io
import os
import sys

from dulwich import porcelain


def commit(work, text):
    with open(os.path.join(work, "file.txt"), "a") as f:
        f.write(text + "\n")
    porcelain.add(work, [os.path.join(work, "file.txt")])
    porcelain.commit(work, message=text.encode(), author=b"Test Author <author@example.com>",
                     committer=b"Test Author <author@example.com>")


def push(work, url):
    errstream = io.BytesIO()
    try:
        porcelain.push(work, url, [b"refs/heads/main:refs/heads/main"], outstream=io.BytesIO(), errstream=errstream)
    except Exception as e:  # what an application shows its user
        raise RuntimeError((str(e) + " " + errstream.getvalue().decode(errors="replace")).strip()) from e
    out = errstream.getvalue().decode(errors="replace")
    if "failed" in out:
        raise RuntimeError(out.strip())


def step(name, fn):
    try:
        fn()
        print("ok " + name)
        return True
    except Exception as e:
        print("error %s: %s" % (name, " | ".join(str(e).splitlines())))
        return False


def main():
    clone_url, open_url, maint_url, work = sys.argv[1:5]
    if not step("clone", lambda: porcelain.clone(clone_url, work, errstream=io.BytesIO(), branch=b"main").close()):
        return 1
    commit(work, "while open")
    if not step("push-open", lambda: push(work, open_url)):
        return 1
    commit(work, "during maintenance")
    if step("push-maintenance", lambda: push(work, maint_url)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
