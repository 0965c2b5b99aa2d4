package gitgate

import (
	"fmt"
	"io"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// SeedReadme gives an empty repository a first commit on its default branch
// holding README.md with content, as "initialize with a README" does on a
// forge. It writes objects with go-git, without a work tree.
func SeedReadme(repo Repo, content string, author string, when time.Time) (plumbing.Hash, error) {
	r, err := git.PlainOpen(repo.Path)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("open %s: %w", repo.Name, err)
	}
	head, err := r.Storer.Reference(plumbing.HEAD)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("read HEAD of %s: %w", repo.Name, err)
	}
	branch := head.Target()
	if _, err := r.Storer.Reference(branch); err == nil {
		return plumbing.ZeroHash, fmt.Errorf("%s is not empty: %s exists", repo.Name, branch)
	}
	st := r.Storer
	blob, err := store(st, plumbing.BlobObject, func(w io.Writer) error {
		_, err := io.WriteString(w, content)
		return err
	})
	if err != nil {
		return plumbing.ZeroHash, err
	}
	tree := &object.Tree{Entries: []object.TreeEntry{{Name: "README.md", Mode: filemode.Regular, Hash: blob}}}
	treeHash, err := encode(st, tree)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	sig := object.Signature{Name: author, Email: author + "@gitgate.invalid", When: when}
	commit := &object.Commit{Author: sig, Committer: sig, Message: "Initial commit\n", TreeHash: treeHash}
	commitHash, err := encode(st, commit)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if err := st.SetReference(plumbing.NewHashReference(branch, commitHash)); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("set %s: %w", branch, err)
	}
	return commitHash, nil
}

type encoder interface {
	Encode(plumbing.EncodedObject) error
}

func encode(st storer.EncodedObjectStorer, o encoder) (plumbing.Hash, error) {
	obj := st.NewEncodedObject()
	if err := o.Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encode object: %w", err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("store object: %w", err)
	}
	return h, nil
}

func store(st storer.EncodedObjectStorer, t plumbing.ObjectType, write func(io.Writer) error) (plumbing.Hash, error) {
	obj := st.NewEncodedObject()
	obj.SetType(t)
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write object: %w", err)
	}
	if err := write(w); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write object: %w", err)
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write object: %w", err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("store object: %w", err)
	}
	return h, nil
}
