package gittest

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// Gate is a running "gitgate serve" started by [Serve].
type Gate struct {
	// HTTPHost and SSHHost are the listeners' host:port.
	HTTPHost, SSHHost string
}

var listeningLine = regexp.MustCompile(`^(http|ssh): listening on (?:http://|ssh://git@)(\S+)`)

// Serve starts the gitgate binary bin as "serve" on free loopback ports
// with env and extra args, its log (stderr) going to logPath, and returns
// once it has printed both addresses (at most 30 s). At the end of the test
// the gate gets SIGTERM and 15 s to stop; a gate that exits with an error
// then, or fails to stop, fails the test, and the log is shown when the test
// failed.
func Serve(t testing.TB, bin string, env []string, logPath string, args ...string) Gate {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args = append([]string{"serve", "--http-listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0", "--shutdown-grace", "5s"}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	hostc := make(chan Gate, 1)
	done := make(chan error, 1)
	go func() {
		var g Gate
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			m := listeningLine.FindStringSubmatch(sc.Text())
			switch {
			case m == nil:
			case m[1] == "http":
				g.HTTPHost = m[2]
			default: // ssh is printed last
				g.SSHHost = m[2]
				hostc <- g
			}
		}
		close(hostc)
		done <- cmd.Wait()
		logf.Close()
	}()
	showLog := func() {
		log, _ := os.ReadFile(logPath)
		t.Logf("gate log:\n%s", log)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gate exit after SIGTERM: %v", err)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("gate did not stop within 15s of SIGTERM")
		}
		if t.Failed() {
			showLog()
		}
	})
	select {
	case g, ok := <-hostc:
		if !ok {
			t.Fatal("gate exited before listening")
		}
		return g
	case <-time.After(30 * time.Second):
		t.Fatal("gate did not print its addresses within 30s")
	}
	return Gate{}
}
