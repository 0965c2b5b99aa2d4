package geo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gitgate/gitgate/internal/atomicfile"
	"github.com/gitgate/gitgate/internal/yamlerr"
)

// File names in the data dir.
const (
	// ConfigFileName is the primary's list of secondaries.
	ConfigFileName = "geo.yaml"
	// MarkerFileName marks the data dir of a secondary site.
	MarkerFileName = "geo-secondary.json"
)

// MinSecretLength is the shortest shared secret accepted, in bytes after
// surrounding white space is trimmed.
const MinSecretLength = 32

// maxSecretFileSize bounds what is read from a secret file.
const maxSecretFileSize = 4 << 10

// maxConfigFileSize bounds what is read from geo.yaml.
const maxConfigFileSize = 1 << 20

// ChangeOnPrimaryMessage is how a secondary refuses a change of its
// maintenance state (CLI and API); ChangeOnPrimary adds the primary's URL.
const ChangeOnPrimaryMessage = "This is a Geo secondary site: maintenance mode follows the primary site. Change it on the primary"

// ChangeOnPrimary returns ChangeOnPrimaryMessage with the primary's URL:
// "... Change it on the primary (https://primary.example.com)."
func ChangeOnPrimary(primaryURL string) string {
	if primaryURL == "" {
		return ChangeOnPrimaryMessage + "."
	}
	return ChangeOnPrimaryMessage + " (" + primaryURL + ")."
}

var nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidateNodeName checks a site's node name: 1 to 64 ASCII letters,
// digits, '.', '_' or '-', starting with a letter or digit.
func ValidateNodeName(name string) error {
	if !nodeNameRE.MatchString(name) {
		return fmt.Errorf("invalid Geo node name %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// ReadSecret reads a shared secret from path. The file must be a regular
// file that neither group nor others may read or write (mode & 0o077 == 0)
// and must hold at least MinSecretLength bytes after trimming white space.
func ReadSecret(path string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer; the mode
	// check below then refuses it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("geo secret file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("geo secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("geo secret file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("geo secret file %s has mode %04o: group and others must have no access (chmod 600 %s)", path, perm, path)
	}
	// Read from the descriptor whose mode was checked, not by path again.
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("geo secret file %s: %w", path, err)
	}
	if len(data) > maxSecretFileSize {
		return nil, fmt.Errorf("geo secret file %s: larger than %d bytes", path, maxSecretFileSize)
	}
	secret := bytes.TrimSpace(data)
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("geo secret file %s holds %d bytes, at least %d needed (for example: openssl rand -hex 32 > %s)",
			path, len(secret), MinSecretLength, path)
	}
	return secret, nil
}

// Config is the primary's Geo configuration, <data-dir>/geo.yaml:
//
//	secondaries:
//	  - name: eu-west
//	    secret_file: secrets/eu-west.key   # relative to the data dir
type Config struct {
	// Secondaries lists the secondary sites allowed to follow this primary
	// and to push through it.
	Secondaries []SecondarySite `yaml:"secondaries"`

	path string
}

// SecondarySite is one secondary known to the primary.
type SecondarySite struct {
	// Name is the node name the secondary signs its tokens with.
	Name string `yaml:"name"`
	// SecretFile holds the secret shared with that secondary.
	SecretFile string `yaml:"secret_file"`
	// URL is the secondary's base URL (optional): a planned failover to
	// it needs it, to repoint this site and the other secondaries.
	URL string `yaml:"url,omitempty"`

	line int
}

// ConfigError is a problem in geo.yaml, "file:line: problem".
type ConfigError struct {
	File string
	Line int // 0 when the problem has no single line
	Err  error
}

// Error returns "file:line: problem".
func (e *ConfigError) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Err.Error()
	}
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Err.Error()
}

// Unwrap returns the problem.
func (e *ConfigError) Unwrap() error { return e.Err }

// LoadConfig reads <dataDir>/geo.yaml. A missing file is an error that
// wraps fs.ErrNotExist.
func LoadConfig(dataDir string) (*Config, error) {
	path := filepath.Join(dataDir, ConfigFileName)
	data, err := atomicfile.ReadBounded(path, maxConfigFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("geo config %s: %w (a primary lists its secondaries there)", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("geo config: %w", err)
	}
	c, err := ParseConfig(path, data)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ParseConfig parses geo.yaml strictly: unknown fields, wrong types, a
// second document, missing or repeated names and missing secret files are
// errors naming the file and line. Relative secret_file paths are relative
// to the directory of path. The secrets are not read (see Verifier).
func ParseConfig(path string, data []byte) (*Config, error) {
	c := &Config{path: path}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	switch err := dec.Decode(c); {
	case errors.Is(err, io.EOF):
		return c, nil // empty file: no secondaries
	case err != nil:
		return nil, yamlError(path, err)
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(path, err)
		}
		return nil, &ConfigError{File: path, Err: errors.New("more than one YAML document")}
	}
	var errs []error
	seen := map[string]int{}
	for i := range c.Secondaries {
		s := &c.Secondaries[i]
		fail := func(format string, args ...any) {
			errs = append(errs, &ConfigError{File: path, Line: s.line, Err: fmt.Errorf(format, args...)})
		}
		switch {
		case s.Name == "":
			fail("secondary without a name")
		case ValidateNodeName(s.Name) != nil:
			fail("%w", ValidateNodeName(s.Name))
		case seen[s.Name] != 0:
			fail("secondary %q is also listed on line %d", s.Name, seen[s.Name])
		default:
			seen[s.Name] = s.line
		}
		if s.URL != "" {
			if u, err := parsePrimaryURL(s.URL); err != nil {
				fail("secondary %q: url: %w", s.Name, err)
			} else {
				s.URL = u.String()
			}
		}
		if s.SecretFile == "" {
			fail("secondary %q: secret_file is required", s.Name)
		} else if !filepath.IsAbs(s.SecretFile) {
			s.SecretFile = filepath.Join(filepath.Dir(path), s.SecretFile)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// UnmarshalYAML decodes a secondary strictly and remembers its line.
func (s *SecondarySite) UnmarshalYAML(n *yaml.Node) error {
	type plain SecondarySite
	var p plain
	if n.Kind != yaml.MappingNode {
		return &ConfigError{Line: n.Line, Err: errors.New("a secondary is a mapping with name and secret_file")}
	}
	// Decoding a node does not inherit the decoder's KnownFields, so check
	// the keys here.
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch k := n.Content[i]; k.Value {
		case "name", "secret_file", "url":
		default:
			return &ConfigError{Line: k.Line, Err: fmt.Errorf("unknown field %q in a secondary (want name, secret_file, url)", k.Value)}
		}
	}
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = SecondarySite(p)
	s.line = n.Line
	return nil
}

// Site returns the secondary named name.
func (c *Config) Site(name string) (SecondarySite, bool) {
	for _, s := range c.Secondaries {
		if s.Name == name {
			return s, true
		}
	}
	return SecondarySite{}, false
}

// Secrets reads every secondary's secret file (see ReadSecret) and returns
// node name → secret, ready for NewVerifier.
func (c *Config) Secrets() (map[string][]byte, error) {
	out := make(map[string][]byte, len(c.Secondaries))
	var errs []error
	for _, s := range c.Secondaries {
		secret, err := ReadSecret(s.SecretFile)
		if err != nil {
			errs = append(errs, &ConfigError{File: c.path, Line: s.line, Err: fmt.Errorf("secondary %q: %w", s.Name, err)})
			continue
		}
		out[s.Name] = secret
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// yamlTypeNames turns Go type names in yaml.v3 messages into file words.
var yamlTypeNames = strings.NewReplacer("geo.Config", "the Geo config",
	"[]geo.SecondarySite", "a list of secondaries", "geo.plain", "a secondary")

// yamlError turns a yaml.v3 error into ConfigErrors with file and line.
func yamlError(path string, err error) error {
	var ce *ConfigError
	if errors.As(err, &ce) {
		return &ConfigError{File: path, Line: ce.Line, Err: ce.Err}
	}
	var errs []error
	for _, p := range yamlerr.Problems(err, yamlTypeNames) {
		errs = append(errs, &ConfigError{File: path, Line: p.Line, Err: errors.New(p.Msg)})
	}
	return errors.Join(errs...)
}

// SecondaryOptions configure a secondary site (gitgate serve --geo-role
// secondary).
type SecondaryOptions struct {
	// PrimaryURL is the primary's base URL, http or https, as clients
	// reach its smart HTTP server (e.g. "https://primary.example.com").
	PrimaryURL string
	// NodeName is this site's name, as listed in the primary's geo.yaml.
	NodeName string
	// SecretFile holds the secret shared with the primary (see ReadSecret).
	SecretFile string

	// PollWait is how long the primary may hold a status poll open before
	// answering that nothing changed (default DefaultPollWait).
	PollWait time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries while the
	// primary is unreachable (defaults 100 ms and 10 s).
	MinBackoff, MaxBackoff time.Duration
}

// Validate checks the options without reading the secret file.
func (o SecondaryOptions) Validate() error {
	if _, err := parsePrimaryURL(o.PrimaryURL); err != nil {
		return err
	}
	if err := ValidateNodeName(o.NodeName); err != nil {
		return err
	}
	if o.SecretFile == "" {
		return errors.New("geo secondary: a secret file is required")
	}
	if o.PollWait < 0 || o.PollWait > MaxPollWait {
		return fmt.Errorf("geo secondary: poll wait %s out of range (0 to %s)", o.PollWait, MaxPollWait)
	}
	if o.MinBackoff < 0 || o.MaxBackoff < 0 || (o.MaxBackoff > 0 && o.MaxBackoff < o.MinBackoff) {
		return fmt.Errorf("geo secondary: bad backoff range %s to %s", o.MinBackoff, o.MaxBackoff)
	}
	return nil
}

// parsePrimaryURL checks and normalises the primary's URL: http or https,
// a host, no user info, query or fragment; no trailing slash.
func parsePrimaryURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return nil, fmt.Errorf("geo primary URL %q: not a URL", raw)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("geo primary URL %q: must start with http:// or https://", raw)
	case u.Host == "":
		return nil, fmt.Errorf("geo primary URL %q: no host", raw)
	case u.User != nil:
		return nil, fmt.Errorf("geo primary URL %q: must not hold credentials", raw)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("geo primary URL %q: must not have a query or fragment", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// Marker records that a data dir belongs to a secondary site. The CLI and
// the settings API refuse to change the maintenance state while it exists.
type Marker struct {
	// PrimaryURL is the URL of the primary this site follows.
	PrimaryURL string `json:"primary_url"`
	// Node is this site's node name.
	Node string `json:"node"`
	// Since is when the site was last started as a secondary.
	Since time.Time `json:"since"`
}

// WriteSecondaryMarker marks dataDir as a secondary of primaryURL.
func WriteSecondaryMarker(dataDir, primaryURL, node string) error {
	data, err := json.MarshalIndent(Marker{PrimaryURL: primaryURL, Node: node, Since: time.Now().UTC()}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode Geo marker: %w", err)
	}
	path := filepath.Join(dataDir, MarkerFileName)
	if err := atomicfile.Write(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write Geo marker %s: %w", path, err)
	}
	return nil
}

// ReadSecondaryMarker reads the marker; ok is false when dataDir is not a
// secondary's. A marker that cannot be read is an error (callers should
// refuse changes then, rather than assume a primary).
func ReadSecondaryMarker(dataDir string) (m Marker, ok bool, err error) {
	path := filepath.Join(dataDir, MarkerFileName)
	data, err := atomicfile.ReadBounded(path, maxConfigFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return Marker{}, false, nil
	}
	if err != nil {
		return Marker{}, false, fmt.Errorf("geo marker: %w", err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return Marker{}, false, fmt.Errorf("geo marker %s: %w", path, err)
	}
	return m, true, nil
}

// RemoveSecondaryMarker removes the marker (a secondary promoted to primary
// or standalone). A missing marker is not an error.
func RemoveSecondaryMarker(dataDir string) error {
	path := filepath.Join(dataDir, MarkerFileName)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove Geo marker: %w", err)
	}
	return atomicfile.SyncDir(dataDir)
}
