package geo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/internal/atomicfile"
)

// ChangeAccessOnPrimaryMessage is how a secondary refuses a change of its
// access data (users, keys, tokens, rules); ChangeAccessOnPrimary adds the
// primary's URL.
const ChangeAccessOnPrimaryMessage = "This is a Geo secondary site: users, SSH keys, tokens and access rules are replicated from the primary site. Change them on the primary"

// ChangeAccessOnPrimary returns ChangeAccessOnPrimaryMessage with the
// primary's URL.
func ChangeAccessOnPrimary(primaryURL string) string {
	if primaryURL == "" {
		return ChangeAccessOnPrimaryMessage + "."
	}
	return ChangeAccessOnPrimaryMessage + " (" + primaryURL + ")."
}

// ChangeReposOnPrimaryMessage is how a secondary refuses to create a
// repository by hand: its repositories are copies of the primary's, and one
// the primary does not have would be moved to the trash as removed there.
// ChangeReposOnPrimary adds the primary's URL.
const ChangeReposOnPrimaryMessage = "This is a Geo secondary site: repositories are replicated from the primary site. Create them on the primary"

// ChangeReposOnPrimary returns ChangeReposOnPrimaryMessage with the
// primary's URL.
func ChangeReposOnPrimary(primaryURL string) string {
	if primaryURL == "" {
		return ChangeReposOnPrimaryMessage + "."
	}
	return ChangeReposOnPrimaryMessage + " (" + primaryURL + ")."
}

// FileAccess is [AccessData] kept in the data dir's access file
// (access.yaml). Its version is the sha256 of the file's bytes; a missing
// file is the empty snapshot.
type FileAccess struct {
	// DataDir holds the access file.
	DataDir string
}

func (a *FileAccess) path() string { return access.FilePath(a.DataDir) }

// Export reads the access file.
func (a *FileAccess) Export(context.Context) ([]byte, string, error) {
	data, err := atomicfile.ReadBounded(a.path(), access.MaxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = nil, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read the access file: %w", err)
	}
	return data, AccessVersion(data), nil
}

// Import checks that data is a valid access file and writes it in place
// atomically (mode 0600: it holds token hashes); the server's watcher then
// loads it.
func (a *FileAccess) Import(_ context.Context, data []byte) error {
	if len(data) > access.MaxFileSize {
		return fmt.Errorf("access data larger than %d bytes", access.MaxFileSize)
	}
	if _, err := access.ParseFile(a.path(), data); err != nil {
		return fmt.Errorf("the primary's access data is invalid: %w", err)
	}
	if err := atomicfile.Write(a.path(), data, 0o600); err != nil {
		return fmt.Errorf("write the access file: %w", err)
	}
	return nil
}

// DocumentAccess is [AccessData] kept in an access.Document: on a site
// whose gates share a database, the site's access data there. Its version
// is the sha256 of the document's bytes, as [FileAccess]'s; no document is
// the empty snapshot. Who may import is the Document's business (on a
// secondary site, only the gate elected to replicate can write).
type DocumentAccess struct {
	Doc access.Document
}

// Export reads the document.
func (a *DocumentAccess) Export(ctx context.Context) ([]byte, string, error) {
	data, err := a.Doc.Read(ctx)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = nil, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read the access data: %w", err)
	}
	return data, AccessVersion(data), nil
}

// Import checks that data is valid access data and replaces the document
// with it, bytes as they are (so that its version is the primary's).
func (a *DocumentAccess) Import(ctx context.Context, data []byte) error {
	if len(data) > access.MaxFileSize {
		return fmt.Errorf("access data larger than %d bytes", access.MaxFileSize)
	}
	if _, err := access.ParseFile(a.Doc.Name(), data); err != nil {
		return fmt.Errorf("the primary's access data is invalid: %w", err)
	}
	if err := a.Doc.Update(ctx, func([]byte) ([]byte, error) { return data, nil }); err != nil {
		return fmt.Errorf("write the access data: %w", err)
	}
	return nil
}

// AccessVersion is the version of an access data snapshot: sha256, hex.
func AccessVersion(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
