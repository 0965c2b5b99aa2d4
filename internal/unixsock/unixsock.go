// Package unixsock listens on Unix sockets that only their owner may
// connect to: the gate's admin socket (which signs every request in as the
// local administrator) and the sockets its git hooks ask it on.
package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// ErrInUse is returned for a socket that another process still answers on.
var ErrInUse = errors.New("another process answers on this socket")

// ListenPrivate listens on path with mode 0600. A socket left at path by a
// process that died is replaced; one that still answers is not (ErrInUse).
//
// The socket is bound inside a new directory of mode 0700 next to path,
// given mode 0600 there, and only then renamed to path: binding at path
// itself would give it the process's umask until the chmod, a moment in
// which, with a lax umask, another local user could connect. Closing the
// listener removes path.
func ListenPrivate(path string) (net.Listener, error) {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrInUse)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".sock-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, err
	}
	return &listener{UnixListener: ln, path: path}, nil
}

// listener removes its socket file when closed.
type listener struct {
	*net.UnixListener
	path string
}

func (l *listener) Close() error {
	os.Remove(l.path)
	return l.UnixListener.Close()
}
