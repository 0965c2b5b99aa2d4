package geo

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// A push over SSH is a stream the client does not close: after the last
// byte of the pack it waits for the server's report. To forward it as an
// HTTP request body, the body has to end where the push data ends, so the
// pump below follows the push's framing (git's pack-protocol, "Reference
// Update Request and Packfile Transfer"):
//
//	[shallow lines] commands (or a push certificate) flush
//	[push options flush]      if the client asked for push-options
//	[pack]                    unless every command deletes a ref
//
// and the pack's own framing: a 12-byte header with the object count, then
// per object a type-and-size header, a delta base, and a zlib stream (which
// has to be inflated to find its end), then the trailing checksum. Bytes
// are passed on as they are read; nothing is rewritten or buffered beyond a
// small write buffer.

// Limits of the pkt-line format.
const (
	pktMaxLen  = 65520
	pktBufSize = 64 << 10
)

var errBadPkt = errors.New("malformed pkt-line")

// readPktRaw reads one pkt-line, header included.
func readPktRaw(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n, err := pktLen(hdr[:])
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return hdr[:], nil
	}
	buf := make([]byte, n)
	copy(buf, hdr[:])
	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		return nil, noEOF(err)
	}
	return buf, nil
}

// pktLen parses a pkt-line length header: 0 for a flush, else the length
// of the whole line (4 to pktMaxLen). Delimiter and response-end packets do
// not occur in a push.
func pktLen(hdr []byte) (int, error) {
	n, err := strconv.ParseUint(string(hdr), 16, 16)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%w: length %q", errBadPkt, hdr)
	case n == 0:
		return 0, nil
	case n < 4 || n > pktMaxLen:
		return 0, fmt.Errorf("%w: length %d", errBadPkt, n)
	}
	return int(n), nil
}

// noEOF turns an EOF in the middle of something into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// pumpPush copies one push from stdin to w, ending exactly after it. It
// first sends on pushing whether there is anything to push (false: the
// client sent only a flush; nothing is written then). It does not close w:
// the caller does, with pumpPush's error, once it has recorded that error,
// so that whoever sees the end of w can also see how the pump ended.
func pumpPush(stdin io.Reader, w io.Writer, pushing chan<- bool) error {
	in := bufio.NewReaderSize(stdin, pktBufSize)
	hdr, err := in.Peek(4)
	if err != nil {
		return noEOF(err)
	}
	if string(hdr) == "0000" {
		in.Discard(4)
		pushing <- false
		return nil
	}
	pushing <- true
	out := bufio.NewWriterSize(w, pktBufSize)
	if err := copyPush(&teeReader{r: in, w: out}); err != nil {
		return err
	}
	return out.Flush()
}

// teeReader passes on every byte read through it.
type teeReader struct {
	r *bufio.Reader
	w *bufio.Writer
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (t *teeReader) ReadByte() (byte, error) {
	c, err := t.r.ReadByte()
	if err != nil {
		return 0, err
	}
	if err := t.w.WriteByte(c); err != nil {
		return 0, err
	}
	return c, nil
}

// flush sends what was read so far, so the primary can start on it.
func (t *teeReader) flush() error { return t.w.Flush() }

// pushHeader is what the command list says about the rest of the push.
type pushHeader struct {
	commands    int
	needPack    bool // some command creates or updates a ref
	pushOptions bool // the client asked for push-options: a list follows
	hashLen     int  // 20 (SHA-1) or 32 (SHA-256)
}

// copyPush passes on the command list, the push options and the pack.
func copyPush(t *teeReader) error {
	h, err := readCommands(t)
	if err != nil {
		return err
	}
	if err := t.flush(); err != nil {
		return err
	}
	if h.pushOptions {
		if err := skipPktList(t); err != nil {
			return fmt.Errorf("push options: %w", err)
		}
	}
	if !h.needPack {
		return nil
	}
	if err := skipPack(t, h.hashLen); err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	return nil
}

// readCommands reads the command list up to its flush. Lines that are not
// commands (shallow lines, a push certificate's other lines) are passed on
// as they are; commands inside a push certificate count.
func readCommands(t *teeReader) (pushHeader, error) {
	h := pushHeader{hashLen: 20}
	sawCaps := false
	for {
		line, err := readPktRaw(t)
		if err != nil {
			return h, fmt.Errorf("commands: %w", noEOF(err))
		}
		if len(line) == 4 { // flush
			return h, nil
		}
		payload := string(line[4:])
		if cmd, caps, found := strings.Cut(payload, "\x00"); found {
			payload = cmd
			if !sawCaps {
				sawCaps = true
				for _, c := range strings.Fields(caps) {
					switch c {
					case "push-options":
						h.pushOptions = true
					case "object-format=sha256":
						h.hashLen = 32
					}
				}
			}
		}
		old, nw, ok := parseCommand(strings.TrimSuffix(payload, "\n"))
		if !ok {
			continue
		}
		h.commands++
		h.hashLen = len(old) / 2
		if strings.Trim(nw, "0") != "" {
			h.needPack = true
		}
	}
}

// parseCommand splits "<old-oid> <new-oid> <ref>".
func parseCommand(line string) (old, nw string, ok bool) {
	f := strings.SplitN(line, " ", 3)
	if len(f) != 3 || f[2] == "" || len(f[0]) != len(f[1]) || (len(f[0]) != 40 && len(f[0]) != 64) {
		return "", "", false
	}
	if !isHex(f[0]) || !isHex(f[1]) {
		return "", "", false
	}
	return f[0], f[1], true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// skipPktList passes on pkt-lines up to and including a flush.
func skipPktList(t *teeReader) error {
	for {
		line, err := readPktRaw(t)
		if err != nil {
			return noEOF(err)
		}
		if len(line) == 4 {
			return nil
		}
	}
}

// Pack object types.
const (
	objCommit   = 1
	objTree     = 2
	objBlob     = 3
	objTag      = 4
	objOfsDelta = 6
	objRefDelta = 7
)

// skipPack passes on one pack: header, objects, trailing checksum.
func skipPack(t *teeReader, hashLen int) error {
	var hdr [12]byte
	if _, err := io.ReadFull(t, hdr[:]); err != nil {
		return fmt.Errorf("header: %w", noEOF(err))
	}
	if !bytes.Equal(hdr[:4], []byte("PACK")) {
		return errors.New("no PACK signature")
	}
	if v := binary.BigEndian.Uint32(hdr[4:8]); v != 2 && v != 3 {
		return fmt.Errorf("unsupported pack version %d", v)
	}
	count := binary.BigEndian.Uint32(hdr[8:12])
	var zr io.ReadCloser
	for i := uint32(0); i < count; i++ {
		size, err := skipObjectHeader(t, hashLen)
		if err != nil {
			return fmt.Errorf("object %d of %d: %w", i+1, count, err)
		}
		if zr == nil {
			zr, err = zlib.NewReader(t)
		} else {
			err = zr.(zlib.Resetter).Reset(t, nil)
		}
		if err != nil {
			return fmt.Errorf("object %d of %d: %w", i+1, count, noEOF(err))
		}
		// Inflating is the only way to find where the stream ends; the
		// declared size bounds the work.
		n, err := io.CopyN(io.Discard, zr, int64(min(size, 1<<62))+1)
		if err != io.EOF {
			if err == nil {
				err = errors.New("more data than its header says")
			}
			return fmt.Errorf("object %d of %d: %w", i+1, count, noEOF(err))
		}
		if uint64(n) != size {
			return fmt.Errorf("object %d of %d: %d bytes, its header says %d", i+1, count, n, size)
		}
	}
	if zr != nil {
		zr.Close()
	}
	trailer := make([]byte, hashLen)
	if _, err := io.ReadFull(t, trailer); err != nil {
		return fmt.Errorf("checksum: %w", noEOF(err))
	}
	return nil
}

// skipObjectHeader passes on an object's type-and-size header and delta
// base, and returns its inflated size.
func skipObjectHeader(t *teeReader, hashLen int) (uint64, error) {
	c, err := t.ReadByte()
	if err != nil {
		return 0, noEOF(err)
	}
	typ := (c >> 4) & 7
	size := uint64(c & 0x0f)
	for shift := 4; c&0x80 != 0; shift += 7 {
		if shift > 57 {
			return 0, errors.New("object size too large")
		}
		if c, err = t.ReadByte(); err != nil {
			return 0, noEOF(err)
		}
		size |= uint64(c&0x7f) << shift
	}
	switch typ {
	case objCommit, objTree, objBlob, objTag:
	case objOfsDelta:
		for n := 0; ; n++ {
			if n == 10 {
				return 0, errors.New("delta offset too large")
			}
			if c, err = t.ReadByte(); err != nil {
				return 0, noEOF(err)
			}
			if c&0x80 == 0 {
				break
			}
		}
	case objRefDelta:
		if _, err := io.ReadFull(t, make([]byte, hashLen)); err != nil {
			return 0, noEOF(err)
		}
	default:
		return 0, fmt.Errorf("bad object type %d", typ)
	}
	return size, nil
}
