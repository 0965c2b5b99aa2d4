package gitgate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ChangeJournalName is the file of the data dir where every committed ref
// transaction, and every repository the CLI creates, appends one line: the
// repository's directory. The installed reference-transaction hook writes
// it for any git process that changes refs (a push through the gate, a
// local push on the server's disk, another git server), except the gate's
// own replication ([EnvReplication]). A Geo primary reads it to tell its
// secondaries what changed (package geo); nothing else depends on it, and a
// line that is lost is found again by the secondaries' reconcile.
const ChangeJournalName = "changes.log"

// maxChangeLine bounds one journal line: a repository path.
const maxChangeLine = 4 << 10

// RecordChange appends the repository directory repoPath to the change
// journal of dataDir. One short write to a file opened for appending, so
// lines from concurrent writers do not interleave.
func RecordChange(dataDir, repoPath string) error {
	if strings.ContainsAny(repoPath, "\n\x00") || len(repoPath) > maxChangeLine {
		return errors.New("record change: unusable repository path")
	}
	f, err := os.OpenFile(filepath.Join(dataDir, ChangeJournalName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("record change: %w", err)
	}
	_, werr := f.WriteString(repoPath + "\n")
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("record change: %w", err)
	}
	return nil
}
